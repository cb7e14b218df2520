package uuid

import (
	"github.com/gofrs/uuid/v5"
	guuid "github.com/google/uuid"
	satori "github.com/satori/go.uuid"
)

func Bad() {
	_ = guuid.New()             // want "guuid.New "
	_, _ = guuid.NewRandom()    // want "guuid.NewRandom"
	_ = uuid.Must(uuid.NewV4()) // want "uuid.NewV4"
	_ = satori.NewV4()          // want "satori.NewV4"
}

// Fine: parsing an id that came in as an input.
func Good(s string) (guuid.UUID, error) { return guuid.Parse(s) }
