package dotimport

import . "time" // want "dot import of \"time\""

func Bad() Time { return Now() }
