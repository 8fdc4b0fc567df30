package policyd

import (
	"testing"

	"github.com/greymilter/greymilter/engine"
)

// A throttled subnet's 421 goes to Postfix as a plain reply, not as
// DEFER_IF_PERMIT (whose code would be Postfix's defer_code, 450).
func TestThrottleReply(t *testing.T) {
	v := engine.Verdict{Action: engine.Defer, Code: 421, ECode: "4.7.0", Text: "Too many new senders"}
	if got := string(appendReply(nil, &v, nil)); got != "action=421 4.7.0 Too many new senders\n\n" {
		t.Errorf("got %q", got)
	}
}
