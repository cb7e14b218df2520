package os

import "os" // want "import of \"os\""

var _ = os.Getenv
