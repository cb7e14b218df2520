package net

import "net" // want "import of \"net\""

var _ = net.Dial
