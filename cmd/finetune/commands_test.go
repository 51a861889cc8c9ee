package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// every lists every command and subcommand of the table.
func every(c *command) []*command {
	var out []*command
	for _, s := range c.subs {
		out = append(out, s)
		out = append(out, every(s)...)
	}
	return out
}

// TestHelpEverywhere: every way of asking for a command's help prints the
// same text to stdout and exits 0; the text shows the command's usage line
// and help, and the flags its usage line names are real flags.
func TestHelpEverywhere(t *testing.T) {
	flagName := regexp.MustCompile(`--([a-z][a-z0-9-]*)`)
	for _, c := range every(root) {
		t.Run(c.path(), func(t *testing.T) {
			path := strings.Fields(c.path())
			want := cli(t, append([]string{"help"}, path...)...)
			for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
				r := cli(t, args...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("finetune %s: exit %d, stderr %q; want 0 and help on stdout", strings.Join(args, " "), r.code, r.stderr)
				}
				if r.stdout != want.stdout {
					t.Fatalf("finetune %s differs from finetune help %s:\n%s\n---\n%s", strings.Join(args, " "), c.path(), r.stdout, want.stdout)
				}
			}
			out := want.stdout
			if !strings.HasPrefix(out, "Usage:") || !strings.Contains(out, c.help) {
				t.Fatalf("help of %s lacks its usage or its help text:\n%s", c.path(), out)
			}
			if c.run != nil {
				if !strings.Contains(out, strings.TrimSpace("finetune "+c.path()+" "+c.args)) {
					t.Fatalf("help of %s lacks the usage line %q:\n%s", c.path(), c.args, out)
				}
				for _, m := range flagName.FindAllStringSubmatch(c.args, -1) {
					if !strings.Contains(out, "\n  -"+m[1]+" ") && !strings.Contains(out, "\n  -"+m[1]+"\t") && !strings.Contains(out, "\n  -"+m[1]+"\n") {
						t.Errorf("the usage line of %s names --%s, which is not one of its flags:\n%s", c.path(), m[1], out)
					}
				}
				return
			}
			for _, s := range c.subs {
				if !strings.Contains(out, strings.TrimSpace("finetune "+s.path()+" "+s.args)) || !strings.Contains(out, s.summary) {
					t.Errorf("help of %s lacks %s's usage line or summary:\n%s", c.path(), s.name, out)
				}
			}
			// A group without its subcommand: the help, on stderr, exit 2.
			r := cli(t, path...)
			if r.code != exitUsage || r.stdout != "" || r.stderr != out {
				t.Fatalf("finetune %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and the help on stderr", c.path(), r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestHelpOfFinetune: finetune -h, --help and help print the command list
// and the exit codes to stdout (exit 0); finetune alone prints them to
// stderr and exits 2.
func TestHelpOfFinetune(t *testing.T) {
	want := cli(t, "help")
	if want.code != 0 || want.stderr != "" {
		t.Fatalf("finetune help: exit %d, stderr %q", want.code, want.stderr)
	}
	for _, c := range root.subs {
		if !strings.Contains(want.stdout, "\n  "+c.name+" ") || !strings.Contains(want.stdout, c.summary) {
			t.Errorf("finetune help does not list %s with its summary", c.name)
		}
	}
	for _, code := range []string{"0", "1", "2", "3", "130"} {
		if !regexp.MustCompile(`\n  ` + code + ` +\S`).MatchString(want.stdout) {
			t.Errorf("finetune help does not explain exit code %s:\n%s", code, want.stdout)
		}
	}
	for _, arg := range []string{"-h", "--help"} {
		if r := cli(t, arg); r.code != 0 || r.stdout != want.stdout || r.stderr != "" {
			t.Errorf("finetune %s: exit %d, stderr %q; want finetune help's text on stdout", arg, r.code, r.stderr)
		}
	}
	if r := cli(t); r.code != exitUsage || r.stdout != "" || r.stderr != want.stdout {
		t.Errorf("finetune: exit %d, stdout %q; want exit 2 and the help on stderr", r.code, r.stdout)
	}
}

// TestUnknownCommand: an unknown command or subcommand, asked to run or for
// help, is one line on stderr that names it, and exit code 2.
func TestUnknownCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"frobnicate"}, []string{`finetune: unknown command "frobnicate"`, "'finetune help'"}},
		{[]string{"frobnicate", "-h"}, []string{`unknown command "frobnicate"`}},
		{[]string{"help", "frobnicate"}, []string{`finetune help: unknown command "frobnicate"`}},
		{[]string{"export", "lora"}, []string{`finetune export: unknown command "export lora"`, "merge, peft or import-peft", "'finetune export -h'"}},
		{[]string{"help", "export", "lora"}, []string{`unknown command "export lora"`, "merge, peft or import-peft"}},
		{[]string{"recipe", "check", "r.yaml"}, []string{`unknown command "recipe check"`, "validate or show"}},
		{[]string{"data", "show", "-h"}, []string{`unknown command "data show"`, "inspect"}},
		{[]string{"help", "train", "more"}, []string{`unknown command "train more"`}},
		{[]string{"train", "--frobnicate"}, []string{"finetune train:", "-frobnicate", "'finetune train -h'"}},
		{[]string{"export", "merge", "--frobnicate"}, []string{"finetune export merge:", "-frobnicate", "'finetune export merge -h'"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			r := cli(t, c.args...)
			if r.code != exitUsage || r.stdout != "" || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr", r.code, r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Fatalf("%q does not say %q", r.stderr, w)
				}
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{errors.New("x.gguf: no such file"), 1},
		{usageErr("--out is required"), 2},
		{fmt.Errorf("export: %w", usageErr("--base is required")), 2},
		{&exitError{code: exitGate, err: errors.New("--fail-under not met")}, 3},
		{&exitError{code: exitInterrupted}, 130},
		{fmt.Errorf("eval: %w", context.Canceled), 130},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
