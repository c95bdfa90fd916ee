package scrub

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"mail mia.krystof@example.com failed":                               "mail [email] failed",
		"Authorization: Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu":                 "Authorization: Basic [credential]",
		"header bearer abc.def-ghi_jkl":                                     "header bearer [credential]",
		"tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_x-y":              "tok [jwt]",
		"ATATT3xFfGF0T2hVbGVfZm9yX3Rlc3Rz failed":                           "[token] failed",
		"GET https://acme.atlassian.net/rest/api/3/search?jql=reporter%3Dx": "GET https://acme.atlassian.net/rest/api/3/search?[query]",
		"card 4111 1111 1111 1111 rejected":                                 "card [digits] rejected",
		"phone +49 170 1234567":                                             "phone +[digits]",
		"at Object.upload (relay-client.js:120:15)":                         "at Object.upload (relay-client.js:120:15)",
		"password=hunter2&x=1":                                              "password=[credential]&x=1",
		"key jrc_uR49j4MDBaCfujd801ZLLl4RKsRkkal2tqJVyfwhfCg":               "key [token]",
		// Shapes hidden behind encodings, other scripts and invisible characters.
		"hans.canary8@exämple.com x":                  "[email] x",
		"uma.canary60@exa\u200bmple.com":              "[email]",
		"vic.canary61\u200b@example.com":              "[email]",
		"wes.canary62@exam\u00adple.com":              "[email]",
		"gina.canary7@[192.168.1.1] x":                "[email] x",
		`"frank canary6"@example.com x`:               "[email] x",
		"judy.canary10＠example.com":                   "[email]",
		"kate.canary11%40example.com":                 "[email]",
		"liam.canary12&#64;example.com":               "[email]",
		"m.canary13&#x40;example.com":                 "[email]",
		"oscar.canary15@localhost down":               "[email] down",
		"https://canary34user:canary34pass@x.io/a":    "https://[credential]@x.io/a",
		"x.atlassian.net/path?canary32=secret done":   "x.atlassian.net/path?[query] done",
		"https://x.atlassian.net/a%3Fcanary76=secret": "https://x.atlassian.net/a?[query]",
		"Cookie: session=canary41Cookie":              "Cookie: [credential]",
		"card ４１１１１１１１１１１１１１１１":                       "card [digits]",
		`["Basic","Y2FuYXJ5NjRzZWNyZXRzZWNyZXQ="]`:    `["Basic","[credential]"]`,
		// A Firefox stack frame is not an address.
		"upload@https://addin.example.com/app.js:10:5":        "upload@https://addin.example.com/app.js:10:5",
		"Object.upload/<@moz-extension://abc/x.js:1:1":        "Object.upload/<@moz-extension://abc/x.js:1:1",
		"async*send@resource://gre/modules/Fetch.sys.mjs:4:2": "async*send@resource://gre/modules/Fetch.sys.mjs:4:2",
		// Harmless text stays.
		"at Object.upload (relay-client.js:120:15) v1001.0.0-SNAPSHOT": "at Object.upload (relay-client.js:120:15) v1001.0.0-SNAPSHOT",
		"password.length: 8, spin=3, bypass=true, token_type: bearer":  "password.length: 8, spin=3, bypass=true, token_type: bearer",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStringReportedMisses: the shapes reported as kept, each scrubbed
// now, as the stored report shows it.
func TestStringReportedMisses(t *testing.T) {
	for in, want := range map[string]string{
		// E-mail addresses in decomposed Unicode and other scripts.
		"from jose\u0301.canary80@example.com": "from [email]",
		"रवि.canary81@example.in failed":       "[email] failed",
		"रवि.canary82@उदाहरण.भारत":             "[email]",
		"jose.canary83@exa\u0301mple.com":      "[email]",
		"ⓜⓘⓐ.canary84@example.com":             "[email]", // circled letters, NFKC
		"mia\u2800canary85@example.com":        "[email]", // a blank that is not a space
		"mia😀canary86@example.com":             "[email]",
		"o'canary87@example.com":               "[email]",
		"'canary88'@example.com":               "'[email]",
		"“frank canary89”@example.com x":       "[email] x",
		"canary90@example.com://x":             "[email]://x", // not a stack frame: the "scheme" has a dot
		"ИВАН.canary91@пример.рф":              "[email]",
		"canary92\\u0040example.com":           "[email]", // JSON escape, as text
		"canary93\\\\u0040example.com":         "[email]", // escaped twice
		"canary94\\u{40}example.com":           "[email]",
		"canary95\\x40example.com":             "[email]",
		"canary96%2540example.com":             "[email]", // percent-encoded twice
		"canary97%u0040example.com":            "[email]",
		"canary98&amp;#64;example.com":         "[email]", // HTML-escaped twice
		"canary99&#64example.com":              "[email]", // no semicolon
		"jos&eacute;canary100@example.com":     "[email]",
		"jos\\u00e9canary101@example.com":      "[email]",
		"canary102\\ufe6bexample.com":          "[email]",
		// Cookies inside quoted strings, also JSON-escaped.
		`"Cookie":"JSESSIONID=CANARY103ABCDEF"`:     `"Cookie":"[credential]"`,
		`{\"Cookie\":\"JSESSIONID=CANARY104\"}`:     `{\"Cookie\":\"[credential]\"}`,
		`'set-cookie': 'sid=CANARY105; Path=/'`:     `'set-cookie': '[credential]'`,
		"Cookie: a=\"CANARY106 x\"; b=c\nnext line": "Cookie: [credential]\nnext line",
		// Credential-like keys, any spelling of separators and quotes.
		"api_token=CANARY107&x=1":                 "api_token=[credential]&x=1",
		"apiToken: CANARY108":                     "apiToken: [credential]",
		`"api-token": "CANARY109 x"`:              `"api-token": "[credential]"`,
		"API TOKEN = CANARY110":                   "API TOKEN = [credential]",
		"access_token=CANARY111":                  "access_token=[credential]",
		`{"refresh_token":"CANARY112"}`:           `{"refresh_token":"[credential]"}`,
		"client_secret: CANARY113":                "client_secret: [credential]",
		"password=CANARY114":                      "password=[credential]",
		"passwd:CANARY115":                        "passwd:[credential]",
		"secret = 'CANARY116'":                    "secret = '[credential]'",
		"private_key: CANARY117":                  "private_key: [credential]",
		"secret_key=CANARY118":                    "secret_key=[credential]",
		"auth=CANARY119":                          "auth=[credential]",
		"session id: CANARY120":                   "session id: [credential]",
		"SESSION-ID=CANARY121":                    "SESSION-ID=[credential]",
		"connect.sid=CANARY122":                   "connect.sid=[credential]",
		"user pin: 4711":                          "user pin: [credential]",
		"“password”: “CANARY123”":                 "“password”: “[credential]”",
		"`token`: `CANARY124`":                    "`token`: `[credential]`",
		`{\"password\":\"CANARY125\"}`:            `{\"password\":\"[credential]\"}`,
		`:password => "CANARY126"`:                `:password => "[credential]"`,
		"ｐａｓｓｗｏｒｄ＝ｃａｎａｒｙ１２７":                      "password=[credential]",
		"pass\\u0077ord=CANARY128":                "password=[credential]",
		"Passwort: CANARY129":                     "Passwort: [credential]",
		"Пароль: CANARY130":                       "Пароль: [credential]",
		"password=[credential]CANARY131":          "password=[credential]",
		"Authorization: Negotiate":                "Authorization: [credential]",
		`"Authorization": "Bearer CANARY132"`:     `"Authorization": "Bearer [credential]"`,
		"<password>CANARY133</password>":          "<password>[credential]</password>",
		`<apiToken type="x">CANARY134</apiToken>`: `<apiToken type="x">[credential]</apiToken>`,
		// Query strings with keys in other scripts.
		"app.js?имя=Иван.canary135": "app.js?[query]",
		// Digit runs in other scripts and with other separators.
		"phone ९८७६५४३२१० x":            "phone [digits] x",
		"phone ٠١٧٠١٢٣٤٥٦٧":             "phone [digits]",
		"card 4111–1111–1111–1111":      "card [digits]",
		"card 4111\u00a01111\u00a01111": "card [digits]",
		"card 4111.1111.1111.1111":      "card [digits]",
		"card ①②③④⑤⑥":                   "card [digits]",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStringProbeMisses: shapes a black-box probe got stored through the
// error-report endpoint, each scrubbed now.
func TestStringProbeMisses(t *testing.T) {
	for in, want := range map[string]string{
		// Obfuscated addresses.
		"john.doe [at] example [dot] com x":      "[email] x",
		"john.doe (AT) example (Dot) com":        "[email]",
		"john [dot] doe [at] example [dot] com":  "[email]",
		"john.doe{at}example.com":                "[email]",
		"john.doe(at)example.com failed":         "[email] failed",
		"mail john.doe @ example.com":            "mail [email]",
		"john.doe=40example.com":                 "[email]",
		"to j o h n @ e x a m p l e . c o m now": "to [redacted] now",
		"j\x00o\x00h\x00n\x00@\x00e\x00x\x00a\x00m\x00p\x00l\x00e\x00.\x00c\x00o\x00m\x00": "[email]",
		"u am9obi5kb2VAZXhhbXBsZS5jb20= x":                                                 "u [encoded] x",
		"u bWFyeS5zbWl0aEBleGFtcGxlLm9yZw x":                                               "u [encoded] x",
		"cGFzc3dvcmQ9Q0FOQVJZMTcxeA":                                                       "[encoded]", // base64url of password=…
		"bQBpAGEALgBjAGEAbgBhAHIAeQAxADcAMgBAAGUAeABhAG0AcABsAGUALgBjAG8AbQA=":             "[encoded]", // UTF-16LE
		// Credential keys: look-alike letters and more names.
		"p\u0430ssword=CANARY1":            "p\u0430ssword=[credential]",
		"\u0440\u0430ssw\u03bfrd: CANARY2": "\u0440\u0430ssw\u03bfrd: [credential]",
		"userPass: CANARY3":                "userPass: [credential]",
		"ticket=CANARY4":                   "ticket=[credential]",
		"tok=CANARY5":                      "tok=[credential]",
		"oauth: CANARY6":                   "oauth: [credential]",
		"user_password_hash=CANARY7":       "user_password_hash=[credential]",
		"dbPwd=CANARY8":                    "dbPwd=[credential]",
		"smtp_pass=CANARY9":                "smtp_pass=[credential]",
		"webhookSecret=CANARY10":           "webhookSecret=[credential]",
		"signing-key: CANARY11":            "signing-key: [credential]",
		"csrfToken=CANARY12":               "csrfToken=[credential]",
		// Personal data under keys in text, to the end of the line.
		"displayName: Mia Krystof\nnext":      "displayName: [credential]\nnext",
		`{"firstName":"Mia","x":1}`:           `{"firstName":"[credential]","x":1}`,
		"account_id=5b10ac8d82e05b22cc7d4ef5": "account_id=[credential]",
		// IP addresses; version strings stay.
		"from 10.0.0.1 and 192.168.1.254:8080": "from [ip] and [ip]:8080",
		"client 127.0.0.1":                     "client [ip]",
		"fe80::1%eth0, 2001:db8::8a2e:370:7334, ::1 and 2001:0db8:0000:0000:0000:ff00:0042:8329": "[ip], [ip], [ip] and [ip]",
		// Harmless text stays.
		"v4.2.0 1001.0.0-SNAPSHOT std::vector Foo::Bar 12:30:45 relay-client.js:120:15":     "v4.2.0 1001.0.0-SNAPSHOT std::vector Foo::Bar 12:30:45 relay-client.js:120:15",
		"token_type=x keyboard=x monkey=x passed=x bypass=x passive=x issueKey=ABC-1 a b c": "token_type=x keyboard=x monkey=x passed=x bypass=x passive=x issueKey=ABC-1 a b c",
		"upload @ https://addin.example.com/app.js:1:2 ProjectManagerFactoryImplementation": "upload @ https://addin.example.com/app.js:1:2 ProjectManagerFactoryImplementation",
		"failed (at) step two": "failed (at) step two",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValueScrubsPersonalKeys(t *testing.T) {
	v := Value(map[string]any{
		"name": "Mia", "displayName": "Mia K", "Full_Name": "Mia K", "first-name": "Mia", "LAST_NAME": "K", "username": "mia",
		"userName": "mia", "accountId": "5b10ac8d", "address": map[string]any{"city": "Brno"}, "street": "Main St 1",
		"phone": 1234.0, "ip": "10.0.0.1", "IP-Address": "::1", "p\u0430ssword": "x", "userPass": "x", "user_password_hash": "x",
		"ticket": "x", "tok": "x", "oauth": "x", "clientSecret": "x", "token": "x",
		"token_type": "bearer", "keyboard": "qwerty", "monkey": "x", "passed": true, "bypass": true, "passive": true, "issueKey": "ABC-1",
	}).(map[string]any)
	for _, k := range []string{"name", "displayName", "Full_Name", "first-name", "LAST_NAME", "username", "userName", "accountId",
		"address", "street", "phone", "ip", "IP-Address"} {
		if v[k] != "[personal]" {
			t.Errorf("%s: %v, want [personal]", k, v[k])
		}
	}
	for _, k := range []string{"p\u0430ssword", "userPass", "user_password_hash", "ticket", "tok", "oauth", "clientSecret", "token"} {
		if v[k] != "[credential]" {
			t.Errorf("%s: %v, want [credential]", k, v[k])
		}
	}
	if v["token_type"] != "bearer" || v["keyboard"] != "qwerty" || v["monkey"] != "x" || v["passed"] != true ||
		v["bypass"] != true || v["passive"] != true || v["issueKey"] != "ABC-1" {
		t.Errorf("harmless values changed: %v", v)
	}
}

// TestCanaries: the oracle sees every sensitive shape before scrubbing
// (so the fuzz test can rely on it) and nothing of it after; the canary
// text is gone.
func TestCanaries(t *testing.T) {
	for _, in := range []string{
		"jose\u0301.canary140@example.com", "रवि.canary141@example.in", "mia\u2800canary142@example.com",
		`"Cookie":"JSESSIONID=CANARY143"`, "api_token=CANARY144", "apiToken: CANARY145", `"api-token": "CANARY146"`,
		"access_token=CANARY147", "refresh_token=CANARY148", "client_secret=CANARY149", "password=CANARY150", "passwd=CANARY151",
		"secret: CANARY152", "private_key=CANARY153", "auth: CANARY154", "session id=CANARY155", "canary156\\u0040example.com",
		"canary157&amp;#64;example.com", "ｃａｎａｒｙ158＠ｅｘａｍｐｌｅ．ｃｏｍ", `{\"password\":\"CANARY159\"}`, "<secret>CANARY160</secret>",
		"phone ९८७६५४३२१०", "“password”: “CANARY161”",
		// The probe's shapes.
		"canary162.doe [at] example [dot] com", "canary163(at)example.com", "canary164 @ example.com", "canary165=40example.com",
		"c a n a r y 1 6 6 @ e x a m p l e . c o m", "c\x00a\x00n\x00a\x00r\x00y\x00@\x00e\x00x\x00.\x00i\x00o\x00",
		"Y2FuYXJ5MTcwLmRvZUBleGFtcGxlLmNvbQ==", "cGFzc3dvcmQ9Q0FOQVJZMTcxeA", "p\u0430ssword=CANARY173",
		"userPass: CANARY174", "ticket=CANARY175", "tok=CANARY176", "oauth=CANARY177", "user_password_hash=CANARY178",
		"displayName: canary179 K", "ip 10.0.0.179", "ip fe80::179",
	} {
		decoded := in
		for range maxPasses {
			decoded = normalize(decoded)
		}
		if Leaks(decoded) == "" {
			t.Errorf("Leaks(%q) finds nothing: the oracle misses the shape", in)
		}
		out := String(in)
		if leak := Leaks(out); leak != "" {
			t.Errorf("String(%q) = %q still holds %q", in, out, leak)
		}
		if strings.Contains(strings.ToLower(out), "canary") {
			t.Errorf("String(%q) = %q keeps the canary", in, out)
		}
	}
}

// TestStringDropsPathologicalText: text that is nested too deep or grows too
// much once decoded is not stored at all.
func TestStringDropsPathologicalText(t *testing.T) {
	deep := "mia" + strings.Repeat("&amp;", 0) + "@example.com"
	for range 9 {
		deep = strings.ReplaceAll(deep, "&", "&amp;")
		deep = strings.ReplaceAll(deep, "@", "&#64;")
	}
	if got := String(deep); got != tooDeep {
		t.Errorf("nine levels of HTML escapes: %q, want %q", got, tooDeep)
	}
	if got := String(strings.Repeat("\ufdfa", 1000)); got != tooLong {
		t.Errorf("ligatures that NFKC writes 18 times longer: %.80q…, want %q", got, tooLong)
	}
	if got := String("a few &amp;amp;amp; levels"); got != "a few & levels" {
		t.Errorf("three levels: %q", got)
	}
}

func TestValueScrubsNestedStringsAndKeys(t *testing.T) {
	v := Value(map[string]any{"user": "a@b.co", "list": []any{"Bearer xyzxyz", 3.0}, "x@y.io": true}).(map[string]any)
	if v["user"] != "[email]" || v["list"].([]any)[0] != "Bearer [credential]" || v["[email]"] != true {
		t.Fatalf("Value: %v", v)
	}
}

func TestValueScrubsSecretKeysAndLongNumbers(t *testing.T) {
	v := Value(map[string]any{
		"password": "canary48plain", "token": "canary49plain", "apiToken": "canary50plain", "X-Relay-Key": "k",
		"session_id": 7.0, "nested": map[string]any{"Set-Cookie": []any{"a=b"}},
		"secret_key": "canary51", "connect.sid": "canary52", "user pin": 4711.0, "Passwort": "canary53", "licenseKey": "canary54",
		"spin": 3.0, "bypass": true, "token_type": "bearer",
		"num": 41111111111111111.0, "negnum": -98765432109876543.0, "small": 42.0, "ms": 1234.5,
		"issueKey": "ABC-1", "ok": true,
	}).(map[string]any)
	for _, k := range []string{"password", "token", "apiToken", "X-Relay-Key", "session_id", "secret_key", "connect.sid", "user pin", "Passwort", "licenseKey"} {
		if v[k] != "[credential]" {
			t.Errorf("%s: %v, want [credential]", k, v[k])
		}
	}
	if v["nested"].(map[string]any)["Set-Cookie"] != "[credential]" {
		t.Errorf("nested cookie: %v", v["nested"])
	}
	if v["num"] != "[digits]" || v["negnum"] != "[digits]" {
		t.Errorf("long numbers: %v %v", v["num"], v["negnum"])
	}
	if v["small"] != 42.0 || v["ms"] != 1234.5 || v["issueKey"] != "ABC-1" || v["ok"] != true ||
		v["spin"] != 3.0 || v["bypass"] != true || v["token_type"] != "bearer" {
		t.Errorf("harmless values changed: %v", v)
	}
}

// FuzzString: nothing that matches a credential or e-mail pattern survives.
func FuzzString(f *testing.F) {
	for _, s := range []string{"a@b.co", "Basic QWxhZGRpbjpvcGVu", "eyJa.eyJb.c", "ATATT3abcdefghijk", "1234567", "x@y@z.io", "Bearer  tok",
		"mia@ex\u00e4mple.com", "a@b.c@d.e", "https://x.io/?a=b@c.de", "eyJhb.eyJ@x.io", "12 34 56 78",
		"a\u200b@b.c", "a%40b.c", "a&#64;b", "u:p@h", "https://u:p@h/", "x＠y", "１２３４５６",
		// Reported misses and their relatives.
		"jose\u0301@example.com", "रवि@example.in", `"Cookie":"JSESSIONID=ABCDEF1234"`, "api_token=abc", "apiToken: x",
		`"api-token": "x"`, "access_token=x", "refresh_token=x", "client_secret=x", "password=x", "passwd: x", "secret=x",
		"private_key: x", "auth=x", "session id: x", "a\\u0040b.c", "a&amp;#64;b.c", "a%2540b.c", "a\\x40b.c", "“password”: “x”",
		`{\"password\":\"x\"}`, "<password>x</password>", "mia\u2800@x.com", "x@y.z://w", "४४४४४४", "1–2–3–4–5–6",
		"111.222.333", "pass\\u0077ord=x", "Cookie: a=\"b c\"; d", "password=[credential]x", "Authorization: Basic [credential]",
		// The probe's shapes.
		"j.d [at] ex [dot] com", "j(at)e.com", "j @ e.com", "j=40e.com", "j o h n @ e x . c o", "j\x00o\x00@\x00e\x00.\x00c\x00",
		"am9obi5kb2VAZXhhbXBsZS5jb20=", "bWFyeS5zbWl0aEBleGFtcGxlLm9yZw", "p\u0430ssword=x", "userPass: x", "ticket=x", "tok=x",
		"oauth=x", "user_password_hash=x", "displayName: A B", "1.2.3.4", "::1", "fe80::1%eth0", "token_type=x keyboard=x issueKey=A-1",
		"v4.2.0", "1001.0.0-SNAPSHOT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if leak := Leaks(out); leak != "" {
			t.Fatalf("String(%q) = %q still holds %q", s, out, leak)
		}
		if leak := Leaks(normalize(out)); leak != "" {
			t.Fatalf("String(%q) = %q still holds %q behind an encoding", s, out, leak)
		}
		if strings.Contains(out, "\x00") && !strings.Contains(s, "\x00") {
			t.Fatal("scrub invented a NUL")
		}
	})
}
