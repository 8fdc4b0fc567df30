package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greymilter/greymilter/test/harness"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "greymilter test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: dir}
	ca.write(t, "ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for cn signed by ca, or by itself, and returns
// the certificate's and the key's files and its fingerprint.
// fingerprint is the certificate's SHA-256 fingerprint as Postfix writes
// it (smtpd_tls_fingerprint_digest's default): AB:CD:...
func (ca *testCA) issue(t *testing.T, name, cn string, usage x509.ExtKeyUsage, selfSigned bool) (certFile, keyFile, fingerprint string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	parent, signer := ca.cert, ca.key
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	return ca.write(t, name+".pem", "CERTIFICATE", der), ca.write(t, name+".key", "PRIVATE KEY", keyDER), strings.Join(hexes, ":")
}

// swaksRcpt finds the answer to RCPT in swaks's transcript: "->"/"<-"
// in clear, "~>"/"<~" inside TLS, a '*' marking a failure.
var swaksRcpt = regexp.MustCompile(`(?m)^ *[-~]> RCPT TO:<[^>]*>\r?\n *<(?:[-~]|\*\*|~\*) +(\d{3})`)

// TestT89VerifiedTLSPostfix: a real Postfix with smtpd_tls_ask_ccert and a
// CA file verifies the client certificate of a STARTTLS session. Through
// the milter ({cert_subject}) and the policy server (ccert_subject), with
// --bypass-verified-tls a client with a certificate of that CA gets 250 at
// once; one with a self-signed certificate, or none, is greylisted, unless
// a rule pins the self-signed certificate's fingerprint (policy server:
// Postfix sends ccert_fingerprint for an unverified certificate too). The
// client is 127.0.0.1, taken out of --trusted-networks.
func TestT89VerifiedTLSPostfix(t *testing.T) {
	t.Parallel()
	harness.Require(t, "postfix", "swaks")
	dir := harness.TempDir(t)
	ca := newTestCA(t, dir)
	serverCert, serverKey, _ := ca.issue(t, "server", "mx.test.example", x509.ExtKeyUsageServerAuth, false)
	clientCert, clientKey, _ := ca.issue(t, "client", "mx.partner.example", x509.ExtKeyUsageClientAuth, false)
	strangerCert, strangerKey, strangerFP := ca.issue(t, "stranger", "mx.stranger.example", x509.ExtKeyUsageClientAuth, true)
	rules := filepath.Join(dir, "rules")
	if err := os.WriteFile(rules, []byte("cert-fingerprint "+strangerFP+" => mode never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, front := range []string{"milter", "policy"} {
		t.Run(front, func(t *testing.T) {
			t.Parallel()
			args := []string{"--delay", "1h", "--trusted-networks", "192.0.2.255/32", "--bypass-verified-tls"}
			if front == "policy" {
				args = append(args, "--policy-socket", "inet:127.0.0.1:0", "--rules", rules)
			}
			gm := harness.Greymilter(t, args...)
			opts := harness.PostfixOptions{MainCF: []string{
				"smtpd_tls_security_level = may",
				"smtpd_tls_cert_file = " + serverCert,
				"smtpd_tls_key_file = " + serverKey,
				"smtpd_tls_ask_ccert = yes",
				"smtpd_tls_CAfile = " + filepath.Join(dir, "ca.pem"),
				"smtpd_tls_loglevel = 1",
			}, MasterCF: []string{"tlsmgr unix - - n 1000? 1 tlsmgr"}}
			deferCode := "451"
			if front == "policy" {
				opts.PolicyService, deferCode = "inet:"+gm.PolicyAddr(), "450"
			} else {
				opts.Milter = gm.Socket
			}
			pf := harness.Postfix(t, opts)
			cases := []struct {
				name      string
				cert, key string
				code      string
				reason    string
			}{
				{"certificate of the trusted CA", clientCert, clientKey, "250", "verified-tls"},
				{"self-signed certificate", strangerCert, strangerKey, deferCode, "new"},
				{"no certificate", "", "", deferCode, "new"},
			}
			if front == "policy" {
				cases[1].code, cases[1].reason = "250", "rule-never"
			}
			for i, c := range cases {
				rcpt := "t89-" + front + strconv.Itoa(i) + "@" + harness.Domain
				args := []string{"--server", pf.Addr, "--tls", "--ehlo", "mx.client.example", "--from", "a@sender.example", "--to", rcpt, "--quit-after", "RCPT", "--timeout", "30"}
				if c.cert != "" {
					args = append(args, "--tls-cert", c.cert, "--tls-key", c.key)
				}
				out, _ := exec.Command("swaks", args...).CombinedOutput()
				m := swaksRcpt.FindSubmatch(out)
				if m == nil || string(m[1]) != c.code {
					t.Errorf("%s: RCPT answer %q, want %s\n%s", c.name, m, c.code, out)
					continue
				}
				if rec := gm.WaitRecord(harness.DecisionFor(rcpt)); rec["reason"] != c.reason {
					t.Errorf("%s: decision %v, want reason=%s", c.name, rec, c.reason)
				}
			}
		})
	}
}
