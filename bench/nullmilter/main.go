// Command nullmilter is a go-milter server that answers continue to every
// stage and accept at the end of the message: the ceiling of what any
// milter built on the same library can reach. It asks the MTA for the same
// stages as greymilter's milter, so that both see the same conversation.
package main

import (
	"net"

	gomilter "github.com/emersion/go-milter"

	"github.com/greymilter/greymilter/bench/internal/serve"
	"github.com/greymilter/greymilter/milter"
)

func main() {
	s := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader,
		Protocol:  milter.Protocol,
	}
	serve.Main("nullmilter", "A milter that lets everything through, for benchmarks.",
		func(ln net.Listener) error {
			if err := s.Serve(ln); err != gomilter.ErrServerClosed {
				return err
			}
			return nil
		},
		func() { s.Close() })
}
