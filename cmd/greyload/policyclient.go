package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"time"
)

// policyConn is the client side of one Postfix policy connection: one
// request at a time, the connection reused as smtpd reuses it.
type policyConn struct {
	c       net.Conn
	r       *bufio.Reader
	buf     []byte
	action  []byte
	timeout time.Duration
	limit   time.Time
}

func dialPolicy(network, address string, timeout time.Duration, limit time.Time) (*policyConn, error) {
	d := net.Dialer{Deadline: earliest(time.Now().Add(timeout), limit)}
	c, err := d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &policyConn{c: c, r: bufio.NewReaderSize(c, 1024), timeout: timeout, limit: limit}, nil
}

// policyReq is what varies between the requests of a run.
type policyReq struct {
	client, helo, sender, rcpt, queueID, instance string
	port                                          int
	count                                         int // recipients accepted so far
}

// Ask sends a RCPT-state request with the attributes Postfix 3.7 sends and
// returns the action of the answer ("DEFER_IF_PERMIT 4.7.1 ...").
func (p *policyConn) Ask(q *policyReq) ([]byte, error) {
	b := p.buf[:0]
	add := func(name, value string) {
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, value...)
		b = append(b, '\n')
	}
	add("request", "smtpd_access_policy")
	add("protocol_state", "RCPT")
	add("protocol_name", "ESMTP")
	add("client_address", q.client)
	add("client_name", "unknown")
	add("client_port", strconv.Itoa(q.port))
	add("reverse_client_name", "unknown")
	add("server_address", "127.0.0.1")
	add("server_port", "25")
	add("helo_name", q.helo)
	add("sender", q.sender)
	add("recipient", q.rcpt)
	add("recipient_count", strconv.Itoa(q.count))
	add("queue_id", q.queueID)
	add("instance", q.instance)
	add("size", "0")
	add("etrn_domain", "")
	add("stress", "")
	add("sasl_method", "")
	add("sasl_username", "")
	add("sasl_sender", "")
	add("ccert_subject", "")
	add("ccert_issuer", "")
	add("ccert_fingerprint", "")
	add("ccert_pubkey_fingerprint", "")
	add("encryption_protocol", "")
	add("encryption_cipher", "")
	add("encryption_keysize", "0")
	add("policy_context", "")
	add("compatibility_level", "3.6")
	add("mail_version", "3.7.11")
	b = append(b, '\n')
	p.buf = b

	p.c.SetDeadline(earliest(time.Now().Add(p.timeout), p.limit))
	if _, err := p.c.Write(b); err != nil {
		return nil, err
	}
	action := p.action[:0]
	found := false
	for lines := 0; ; lines++ {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if lines > 100 {
			return nil, fmt.Errorf("policy: answer of more than 100 lines")
		}
		if a, ok := bytes.CutPrefix(line, []byte("action=")); ok {
			action, found = append(action[:0], a...), true
		}
	}
	p.action = action
	if !found {
		return nil, fmt.Errorf("policy: answer without action")
	}
	return action, nil
}

// Close closes the connection.
func (p *policyConn) Close() error { return p.c.Close() }
