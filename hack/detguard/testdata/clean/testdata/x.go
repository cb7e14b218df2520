package x

import "os"

var _ = os.Getenv
