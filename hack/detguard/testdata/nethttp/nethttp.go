package nethttp

import "net/http" // want "import of \"net/http\""

var _ = http.Get
