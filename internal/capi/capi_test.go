package capi

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// block is one struct or enum definition of capi.h.
type block struct {
	kind   string   // "struct" or "enum"
	name   string   // tag
	text   string   // the definition, first line to "};"
	fields []string // struct fields or enum constants, in order
}

var (
	blockStart = regexp.MustCompile(`^(struct|enum) (\w+) \{$`)
	fieldName  = regexp.MustCompile(`(\w+)\s*(\[[^\]]*\])?\s*;$`)
	enumConst  = regexp.MustCompile(`^(\w+)\s*=`)
)

// parseHeader splits capi.h into its struct/enum definitions and the rest
// (forward declarations, typedefs, macros and prototypes).
func parseHeader(t *testing.T, src string) (blocks []block, rest string) {
	t.Helper()
	var out strings.Builder
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		m := blockStart.FindStringSubmatch(lines[i])
		if m == nil {
			out.WriteString(lines[i])
			out.WriteByte('\n')
			continue
		}
		b := block{kind: m[1], name: m[2]}
		var body []string
		j := i + 1
		for ; j < len(lines) && lines[j] != "};"; j++ {
			body = append(body, lines[j])
			line := strings.TrimSpace(lines[j])
			if line == "" || strings.HasPrefix(line, "//") {
				continue
			}
			var fm []string
			if b.kind == "struct" {
				fm = fieldName.FindStringSubmatch(line)
			} else {
				fm = enumConst.FindStringSubmatch(line)
			}
			if fm == nil {
				t.Fatalf("capi.h:%d: cannot parse %s %s member %q (one member per line)", j+1, b.kind, b.name, line)
			}
			b.fields = append(b.fields, fm[1])
		}
		if j == len(lines) {
			t.Fatalf("capi.h:%d: %s %s is not closed by a line holding only \"};\"", i+1, b.kind, b.name)
		}
		b.text = strings.Join(append([]string{lines[i]}, append(body, "};")...), "\n")
		blocks = append(blocks, b)
		i = j
	}
	return blocks, out.String()
}

// checkerSource builds a C file that includes the real headers and asserts
// that capi.h agrees with them.
func checkerSource(t *testing.T, header string) string {
	blocks, rest := parseHeader(t, header)
	if len(blocks) < 10 {
		t.Fatalf("found only %d struct/enum definitions in capi.h; the parser is out of step with the header", len(blocks))
	}
	var c strings.Builder
	c.WriteString("#include <stddef.h>\n#include \"llama.h\"\n#include \"gguf.h\"\n\n")
	c.WriteString("// capi.h without its struct and enum definitions: every prototype,\n// typedef and macro must be compatible with the real ones.\n")
	c.WriteString(rest)
	c.WriteString("\n// Mirrored definitions, renamed, and their layout compared.\n")
	for _, b := range blocks {
		mirror := "ft_mirror_" + b.name
		text := strings.Replace(b.text, b.kind+" "+b.name+" {", b.kind+" "+mirror+" {", 1)
		if b.kind == "enum" {
			for _, f := range b.fields {
				text = regexp.MustCompile(`\b`+f+`\b`).ReplaceAllString(text, "FT_MIRROR_"+f)
			}
		}
		c.WriteString(text + "\n")
		real, mir := b.kind+" "+b.name, b.kind+" "+mirror
		fmt.Fprintf(&c, "_Static_assert(sizeof(%s) == sizeof(%s), \"%s: size differs\");\n", mir, real, real)
		fmt.Fprintf(&c, "_Static_assert(_Alignof(%s) == _Alignof(%s), \"%s: alignment differs\");\n", mir, real, real)
		for _, f := range b.fields {
			if b.kind == "enum" {
				fmt.Fprintf(&c, "_Static_assert((long long)FT_MIRROR_%s == (long long)%s, \"%s: value of %s differs\");\n", f, f, real, f)
				continue
			}
			fmt.Fprintf(&c, "_Static_assert(offsetof(%s, %s) == offsetof(%s, %s), \"%s: offset of %s differs\");\n", mir, f, real, f, real, f)
			fmt.Fprintf(&c, "_Static_assert(sizeof(((%s *)0)->%s) == sizeof(((%s *)0)->%s), \"%s: size of %s differs\");\n", mir, f, real, f, real, f)
		}
		c.WriteByte('\n')
	}
	return c.String()
}

func ollamaIncludes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ollama/ollama").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/ollama/ollama: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	return []string{
		filepath.Join(dir, "ml", "backend", "ggml", "ggml", "include"),
		filepath.Join(dir, "llama", "llama.cpp", "include"),
	}
}

// compileChecker compiles the checker for header; it returns the compiler's
// output and whether it succeeded.
func compileChecker(t *testing.T, header string) (string, bool) {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	file := filepath.Join(t.TempDir(), "capi_check.c")
	if err := os.WriteFile(file, []byte(checkerSource(t, header)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-std=c11", "-fsyntax-only", "-Werror", "-Wall"}
	for _, inc := range ollamaIncludes(t) {
		args = append(args, "-I", inc)
	}
	cmd := exec.Command(cc, append(args, file)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err == nil
}

func readHeader(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("capi.h")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHeaderMatchesUpstream is the guard against a module bump silently
// corrupting memory: every struct, enum value and prototype in capi.h must
// agree with the real headers.
func TestHeaderMatchesUpstream(t *testing.T) {
	out, ok := compileChecker(t, readHeader(t))
	if !ok {
		t.Fatalf("capi.h does not match the headers of the pinned ollama module:\n%s", out)
	}
}

// TestCheckerCatchesMismatches proves the checker fails for each kind of
// drift it is there to catch.
func TestCheckerCatchesMismatches(t *testing.T) {
	header := readHeader(t)
	cases := []struct{ name, old, new, want string }{
		{"swapped fields", "    bool use_mmap;\n    bool use_mlock;", "    bool use_mlock;\n    bool use_mmap;", "offset of use_mmap differs"},
		{"missing field", "    int32_t main_gpu;\n", "", "size differs"},
		{"wrong field type", "    uint32_t n_ubatch;", "    uint64_t n_ubatch;", "n_ubatch"},
		{"wrong enum value", "    GGML_TYPE_BF16 = 30,", "    GGML_TYPE_BF16 = 31,", "value of GGML_TYPE_BF16 differs"},
		{"wrong prototype", "int32_t llama_decode(struct llama_context * ctx, struct llama_batch batch);", "int32_t llama_decode(struct llama_context * ctx, struct llama_batch * batch);", "llama_decode"},
		{"wrong return type", "uint64_t llama_model_n_params(const struct llama_model * model);", "int32_t llama_model_n_params(const struct llama_model * model);", "llama_model_n_params"},
		{"unknown function", "void llama_backend_free(void);", "void llama_backend_free(void);\nint llama_no_such_function(int);", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(header, tc.old) {
				t.Fatalf("capi.h no longer contains %q; update this test", tc.old)
			}
			mutated := strings.Replace(header, tc.old, tc.new, 1)
			out, ok := compileChecker(t, mutated)
			if tc.want == "" {
				// A declaration of a function upstream lacks compiles; the
				// link of the real packages catches it instead.
				if !ok {
					t.Fatalf("checker rejected an extra declaration:\n%s", out)
				}
				return
			}
			if ok {
				t.Fatalf("checker accepted a header with a %s", tc.name)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("checker failed, but without naming %q:\n%s", tc.want, out)
			}
		})
	}
}
