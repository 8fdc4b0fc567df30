// Package harness runs greymilter end to end: a real Postfix instance, the
// real greymilter binary and a small SMTP client that shows the reply to
// every recipient, so that tests see what a remote mail server would see.
//
// Typical use:
//
//	gm := harness.Greymilter(t, "--delay", "3s")
//	pf := harness.Postfix(t, harness.PostfixOptions{Milter: gm.Socket})
//	res := harness.Send(t, pf.Addr, harness.Envelope{
//		ClientAddr: "192.0.2.10",
//		From:       "alice@example.org",
//		To:         []string{"bob@" + harness.Domain},
//	})
//	// res.Rcpt[0] is "451 4.7.1 Greylisted, please try again in 3 seconds"
//
// # Postfix
//
// Each call to [Postfix] starts a private instance: main.cf and master.cf in
// their own config_directory, with queue_directory, data_directory and the
// Maildir in the same temporary directory, smtpd on a free loopback port,
// and no process chrooted. It needs root: Postfix's master and "postfix -c
// DIR" accept, from root, a config directory that the default main.cf does
// not list in alternate_config_directories (checked with Postfix 3.7), so
// nothing under /etc/postfix is written and the system instance needs
// neither to be configured nor to run. The harness runs "postfix check"
// (which creates the queue directories) and then master in the foreground,
// under a shell that stops it when the test ends or its process dies.
// Instances are independent, so tests that use them may run in parallel.
// Postfix's daemons cannot enter t.TempDir(); a unix socket they must reach
// goes in a [TempDir].
//
// Mail for any address in [Domain] is accepted and delivered by virtual(8)
// into one Maildir owned by "nobody" (virtual(8) allows no regexp
// substitution that would give each local part its own);
// [PostfixInstance.WaitMessage] tells recipients apart by the Delivered-To
// header that virtual(8) adds. Other destinations meet the error transport:
// nothing leaves the machine.
//
// XCLIENT is allowed from 127.0.0.1, so that a test poses as any client
// address (use the documentation ranges 192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24 and 2001:db8::/32; loopback is trusted by greymilter).
// SASL is enabled, with no account to log in with, so that XCLIENT LOGIN=
// marks the session as authenticated and Postfix hands the login name to
// milters as {auth_authen} and to policy servers as sasl_username.
//
// # greymilter
//
// [Greymilter] builds ./cmd/greymilter once per test process and runs it on
// a free port with a file database, a dead loopback DNS server unless the
// test gives one, and its log in a file that [GreymilterProcess.Records]
// parses as slog records. It can be killed, stopped and restarted on the
// same database. A package that uses it should run its tests through [Main],
// which removes the binary at the end and runs more tests in parallel.
//
// # Requirements
//
// The tests need root and the postfix binaries (plus miltertest or swaks for
// the tests that use them). When something is missing [Require] skips the
// test with a message, except under CI (CI=true) where it fails it: in CI a
// missing dependency must never turn into a silently green run.
package harness
