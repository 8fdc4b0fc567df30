// Command nullmilter is a go-milter server that answers continue to every
// stage and accept at the end of the message: the ceiling of what any
// milter built on the same library can reach. It asks the MTA for the same
// stages as greymilter's milter, so that both see the same conversation.
// With --wrapped it reads through greymilter's connection wrapper
// (milter.LimitListener: buffered reads, and no answers at connect, HELO
// and MAIL with an MTA of protocol 6), so that the wrapper's gain or cost
// shows apart from greymilter's engine.
package main

import (
	"net"

	gomilter "github.com/emersion/go-milter"
	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/bench/internal/serve"
	"github.com/greymilter/greymilter/milter"
)

func main() {
	s := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader,
		Protocol:  milter.Protocol,
	}
	var wrapped bool
	serve.Main("nullmilter", "A milter that lets everything through, for benchmarks.",
		func(ln net.Listener) error {
			if wrapped {
				ln = milter.LimitListener(ln, milter.Limits{}, nil)
			}
			if err := s.Serve(ln); err != gomilter.ErrServerClosed {
				return err
			}
			return nil
		},
		func() { s.Close() },
		func(fs *pflag.FlagSet) {
			fs.BoolVar(&wrapped, "wrapped", false, "read through greymilter's connection wrapper (limits, read buffer)")
		})
}
