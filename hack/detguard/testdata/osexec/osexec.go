package osexec

import "os/exec" // want "import of \"os/exec\""

var _ = exec.Command
