package ioutil

import "io/ioutil" // want "import of \"io/ioutil\""

var _ = ioutil.ReadFile
