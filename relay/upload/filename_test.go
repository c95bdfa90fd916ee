package upload

import (
	"errors"
	"mime"
	"strings"
	"testing"
)

func TestEncodeDispositionParams(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "report.pdf", `filename="report.pdf"`},
		{"spaces and specials stay plain", "a b;c=d (1) 100%.pdf", `filename="a b;c=d (1) 100%.pdf"`},
		{"empty", "", `filename=""`},
		{"double quote", `a"b.txt`, `filename="a%22b.txt"; filename*=UTF-8''a%22b.txt`},
		{"backslash", `a\b.txt`, `filename="a%5Cb.txt"; filename*=UTF-8''a%5Cb.txt`},
		{"CR LF", "a\r\nb", `filename="a%0D%0Ab"; filename*=UTF-8''a%0D%0Ab`},
		{"NUL and DEL", "a\x00\x7f", `filename="a%00%7F"; filename*=UTF-8''a%00%7F`},
		{"euro", "€.pdf", `filename="%E2%82%AC.pdf"; filename*=UTF-8''%E2%82%AC.pdf`},
		{"non-ASCII with space and percent", "ä 5%.txt", `filename="%C3%A4 5%.txt"; filename*=UTF-8''%C3%A4%205%25.txt`},
		{"attr-chars unencoded in filename*", "é!#$&+-.^_`|~", "filename=\"%C3%A9!#$&+-.^_`|~\"; filename*=UTF-8''%C3%A9!#$&+-.^_`|~"},
		{"tspecials encoded in filename*", "é()<>@,;:/[]?={}'*", `filename="%C3%A9()<>@,;:/[]?={}'*"; filename*=UTF-8''%C3%A9%28%29%3C%3E%40%2C%3B%3A%2F%5B%5D%3F%3D%7B%7D%27%2A`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeDispositionParams(tt.in)
			if got != tt.want {
				t.Errorf("EncodeDispositionParams(%q) =\n %s\nwant\n %s", tt.in, got, tt.want)
			}
			if back := parseDisposition(t, got); back != tt.in {
				t.Errorf("parsed back as %q, want %q", back, tt.in)
			}
		})
	}
}

// parseDisposition parses a part header built from params the way a
// receiver does and returns its filename.
func parseDisposition(t testing.TB, params string) string {
	t.Helper()
	_, p, err := mime.ParseMediaType(`form-data; name="file"; ` + params)
	if err != nil {
		t.Fatalf("ParseMediaType(%q): %v", params, err)
	}
	return p["filename"]
}

func TestValidateFilename(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"plain", "a.pdf", true},
		{"one character", "a", true},
		{"inner spaces", " a b ", true},
		{"control characters are encodable", "a\r\n\x00.txt", true},
		{"255 ASCII", strings.Repeat("x", 255), true},
		{"255 runes of 4 bytes", strings.Repeat("📎", 255), true},
		{"empty", "", false},
		{"only spaces", "   ", false},
		{"only white space", "\t\r\n\u00a0\u3000", false},
		{"256 ASCII", strings.Repeat("x", 256), false},
		{"256 runes", strings.Repeat("é", 256), false},
		{"invalid UTF-8", "a\xff.pdf", false},
		{"truncated UTF-8", "a\xe2\x82", false},
		{"surrogate half", "\xed\xa0\x80", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFilename(tt.in)
			if tt.ok {
				if err != nil {
					t.Errorf("ValidateFilename(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			var fe *FilenameError
			if !errors.Is(err, ErrBadFilename) || !errors.As(err, &fe) || fe.Reason == "" {
				t.Errorf("ValidateFilename(%q) = %v, want a *FilenameError with a reason", tt.in, err)
			}
		})
	}
}

func TestFilenameFromContentDisposition(t *testing.T) {
	tests := []struct {
		name, header, want string
		wantErr            bool
	}{
		{"quoted", `attachment; filename="a.pdf"`, "a.pdf", false},
		{"token", `attachment; filename=a.pdf`, "a.pdf", false},
		{"inline", `inline; filename="a b.pdf"`, "a b.pdf", false},
		{"case-insensitive names", `Attachment; FILENAME="a.pdf"`, "a.pdf", false},
		{"escaped quote", `attachment; filename="a\"b.pdf"`, `a"b.pdf`, false},
		{"RFC 5987 euro", `attachment; filename*=UTF-8''%E2%82%AC.pdf`, "€.pdf", false},
		{"lower-case charset", `attachment; filename*=utf-8'en'%E2%82%AC.pdf`, "€.pdf", false},
		{"filename* preferred, after", `attachment; filename="EUR.pdf"; filename*=UTF-8''%E2%82%AC.pdf`, "€.pdf", false},
		{"filename* preferred, before", `attachment; filename*=UTF-8''%E2%82%AC.pdf; filename="EUR.pdf"`, "€.pdf", false},
		{"RFC 2231 continuation", `attachment; filename*0="long"; filename*1="name.pdf"`, "longname.pdf", false},
		{"unsupported charset falls back", `attachment; filename="a.pdf"; filename*=ISO-8859-1''%E4.pdf`, "a.pdf", false},
		{"our own encoding", "attachment; " + EncodeDispositionParams("x\"\r\n€.pdf"), "x\"\r\n€.pdf", false},
		{"no filename", `attachment`, "", true},
		{"other parameter only", `attachment; name="a.pdf"`, "", true},
		{"empty filename", `attachment; filename=""`, "", true},
		{"blank filename", `attachment; filename="  "`, "", true},
		{"invalid UTF-8 in filename*", `attachment; filename*=UTF-8''%FF.pdf`, "", true},
		{"only an unsupported charset", `attachment; filename*=ISO-8859-1''%E4.pdf`, "", true},
		{"too long", `attachment; filename="` + strings.Repeat("a", 256) + `"`, "", true},
		{"unparseable", `attachment; filename="unterminated`, "", true},
		{"no disposition type", `filename="a.pdf"`, "", true},
		{"empty header", ``, "", true},
		{"duplicate differing", `attachment; filename="a"; filename="b"`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FilenameFromContentDisposition(tt.header)
			if tt.wantErr {
				if !errors.Is(err, ErrBadFilename) {
					t.Errorf("= %q, %v; want ErrBadFilename", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzEncodeDisposition: the parameters never carry CR, LF, NUL or a bare
// quote, and always parse back to the input.
func FuzzEncodeDisposition(f *testing.F) {
	for _, s := range []string{
		"a.pdf", "", `"`, `\`, `\"`, "a\r\nb", "\x00", "€", "🎉", "a\"; filename*=UTF-8''x",
		"%22", "UTF-8''%E2%82%AC", strings.Repeat("é", 255), "a\xffb", " ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		out := EncodeDispositionParams(name)
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("CR, LF or NUL in %q", out)
		}
		// Shape: filename="<no quote, no backslash>" [; filename*=UTF-8''<attr-chars and %XX>]
		rest, ok := strings.CutPrefix(out, `filename="`)
		if !ok {
			t.Fatalf("no filename=\" prefix: %q", out)
		}
		quoted, rest, ok := strings.Cut(rest, `"`)
		if !ok || strings.Contains(quoted, `\`) {
			t.Fatalf("bad quoted filename in %q", out)
		}
		if rest != "" {
			ext, ok := strings.CutPrefix(rest, "; filename*=UTF-8''")
			if !ok {
				t.Fatalf("unexpected text after filename: %q", out)
			}
			for i := 0; i < len(ext); i++ {
				if ext[i] == '%' {
					if i+2 >= len(ext) || !isHex(ext[i+1]) || !isHex(ext[i+2]) {
						t.Fatalf("bad escape in %q", ext)
					}
					i += 2
				} else if !isAttrChar(ext[i]) {
					t.Fatalf("byte %q unencoded in filename* %q", ext[i], ext)
				}
			}
		}
		if got := parseDisposition(t, out); got != name {
			t.Errorf("parsed back %q, want %q (params %s)", got, name, out)
		}
		if ValidateFilename(name) == nil {
			got, err := FilenameFromContentDisposition("attachment; " + out)
			if err != nil || got != name {
				t.Errorf("FilenameFromContentDisposition = %q, %v; want %q", got, err, name)
			}
		}
	})
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F'
}

// FuzzFilenameFromContentDisposition: any header gives a valid name or
// ErrBadFilename, and a returned name survives our own encoding.
func FuzzFilenameFromContentDisposition(f *testing.F) {
	for _, s := range []string{
		`attachment; filename="a.pdf"`,
		`attachment; filename*=UTF-8''%E2%82%AC.pdf`,
		`attachment; filename="x"; filename*=UTF-8''y`,
		`attachment; filename*0*=UTF-8''%E2%82; filename*1=%AC.pdf`,
		`form-data; name="file"; filename="a\"b"`,
		`attachment; filename="a`,
		`attachment; filename*=UTF-8''%`,
		`attachment;;; filename=a;`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		name, err := FilenameFromContentDisposition(header)
		if err != nil {
			if !errors.Is(err, ErrBadFilename) || name != "" {
				t.Fatalf("= %q, %v; want ErrBadFilename", name, err)
			}
			return
		}
		if err := ValidateFilename(name); err != nil {
			t.Fatalf("returned invalid name %q: %v", name, err)
		}
		again, err := FilenameFromContentDisposition("attachment; " + EncodeDispositionParams(name))
		if err != nil || again != name {
			t.Fatalf("re-encoded %q parsed as %q, %v", name, again, err)
		}
	})
}
