package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/greymilter/greymilter/test/harness"
)

var update = flag.Bool("update", false, "rewrite the generated files (contrib/greymilter.conf, contrib/greymilter.8)")

// TestGeneratedFiles fails when the example configuration or the man page
// no longer matches the flag definitions; `make generate` rewrites them.
func TestGeneratedFiles(t *testing.T) {
	for _, f := range []struct {
		path  string
		write func(io.Writer)
	}{
		{"../../contrib/greymilter.conf", writeExampleConfig},
		{"../../contrib/greymilter.8", writeManPage},
	} {
		var want bytes.Buffer
		f.write(&want)
		if *update {
			if err := os.WriteFile(f.path, want.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatalf("%v (run make generate)", err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s is out of date with the flag definitions: run make generate", f.path)
		}
	}
}

// TestExampleConfigIsGoodAndComplete: the example configuration passes
// check-config as it is, with every option in it uncommented at its
// default, and names every option --help lists.
func TestExampleConfigIsGoodAndComplete(t *testing.T) {
	var conf bytes.Buffer
	writeExampleConfig(&conf)
	dir := t.TempDir()
	path := filepath.Join(dir, "greymilter.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"check-config", "--config", path, "--dns", "127.0.0.1:53"}, &out, &out); code != 0 {
		t.Errorf("check-config of the example: exit %d:\n%s", code, out.String())
	}
	// Every option with a default uncommented: still good. (An empty
	// default is no file or zone: an empty value is refused.)
	var all strings.Builder
	for _, line := range strings.Split(conf.String(), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "#"), " = "); ok && !strings.Contains(k, " ") && v != "" && !strings.HasPrefix(v, "(") {
			all.WriteString(k + " = " + v + "\n")
		}
	}
	allPath := filepath.Join(dir, "all.conf")
	if err := os.WriteFile(allPath, []byte(all.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check-config", "--config", allPath, "--dns", "127.0.0.1:53"}, &out, &out); code != 0 {
		t.Errorf("check-config of every default: exit %d:\n%s\n%s", code, out.String(), all.String())
	}
	cfg := newConfig()
	n := 0
	cfg.fs.VisitAll(func(f *pflag.Flag) {
		if !documented(f) {
			return
		}
		n++
		if !strings.Contains(conf.String(), "\n#"+f.Name+" = ") && !strings.Contains(conf.String(), "\n"+f.Name+" = ") {
			t.Errorf("the example configuration lacks %s", f.Name)
		}
	})
	if n < 50 {
		t.Errorf("only %d options documented", n)
	}
}

// TestManPage: the man page names every option and renders with man(1)
// when it is installed.
func TestManPage(t *testing.T) {
	var page bytes.Buffer
	writeManPage(&page)
	newConfig().fs.VisitAll(func(f *pflag.Flag) {
		if documented(f) && !strings.Contains(page.String(), `\-\-`+roff(f.Name)) {
			t.Errorf("the man page lacks --%s", f.Name)
		}
	})
	man, err := exec.LookPath("man")
	if err != nil {
		if harness.CI() {
			t.Fatal("man is not installed (CI=true: missing dependencies fail the run)")
		}
		t.Skip("man is not installed")
	}
	path := filepath.Join(t.TempDir(), "greymilter.8")
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "warning") {
		t.Errorf("man warns:\n%s", out)
	}
	for _, want := range []string{"greymilter - greylisting milter", "--delay DURATION", "check-config", "SIGHUP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered man page lacks %q", want)
		}
	}
}
