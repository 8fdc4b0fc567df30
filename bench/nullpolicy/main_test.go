package main

import (
	"bufio"
	"net"
	"testing"
)

func TestAnswersEveryRequestOnOneConnection(t *testing.T) {
	client, server := net.Pipe()
	go answer(server)
	defer client.Close()
	r := bufio.NewReader(client)
	for i := range 3 {
		go client.Write([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@example.org\n\n"))
		for _, want := range []string{"action=DUNNO\n", "\n"} {
			line, err := r.ReadString('\n')
			if err != nil || line != want {
				t.Fatalf("request %d: read %q, %v; want %q", i, line, err, want)
			}
		}
	}
}
