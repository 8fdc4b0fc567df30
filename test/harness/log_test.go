package harness

import (
	"reflect"
	"testing"
)

func TestParseLogRecord(t *testing.T) {
	tests := []struct {
		line string
		want LogRecord
	}{
		{
			`time=2025-11-25T14:30:00.000Z level=INFO msg=decision action=greylist reason=new client=192.0.2.1 sender=<a@b.example> recipient=<c@d.example> wait=3`,
			LogRecord{"time": "2025-11-25T14:30:00.000Z", "level": "INFO", "msg": "decision", "action": "greylist",
				"reason": "new", "client": "192.0.2.1", "sender": "<a@b.example>", "recipient": "<c@d.example>", "wait": "3"},
		},
		{
			`level=WARN msg="milter: connection lost" err="read tcp: EOF \"x\"" n=`,
			LogRecord{"level": "WARN", "msg": "milter: connection lost", "err": `read tcp: EOF "x"`, "n": ""},
		},
		{"", nil},
		{"greymilter listening on inet:127.0.0.1:10029", nil},
		{`msg="unterminated`, nil},
		{`msg="a"b`, nil},
	}
	for _, tt := range tests {
		if got := ParseLogRecord(tt.line); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseLogRecord(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}
