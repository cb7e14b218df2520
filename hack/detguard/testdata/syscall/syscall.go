package syscall

import "syscall" // want "import of \"syscall\""

var _ = syscall.Getpid
