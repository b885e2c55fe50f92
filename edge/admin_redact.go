package edge

import (
	"net/url"
	"strings"
)

// redacted replaces a secret in /config_dump.
const redacted = "[redacted]"

// redact returns the config document doc (the YAML round trip of the
// config: maps, lists and scalars) with its secrets replaced by
// "[redacted]", so that /config_dump can be shared:
//
//   - fields whose name says they hold a secret (secret, password, token,
//     hmac, credential, ..._key, ..._keys: inline session ticket keys or
//     ACME EAB credentials, should the config grow them); file name fields
//     (..._file) are paths, not contents, and stay;
//   - the values of header entries (request_headers_to_add, header
//     matchers) for credentials headers such as authorization and cookie;
//   - in URLs, a password and the query string (on_demand_ask may carry a
//     token there).
//
// Private keys never appear: the config names their files only.
func redact(doc any) any {
	switch v := doc.(type) {
	case map[string]any:
		sensitiveHeader := false
		if n, ok := v["name"].(string); ok && credentialHeaders[strings.ToLower(n)] {
			sensitiveHeader = true
		}
		for k, x := range v {
			switch {
			case secretField(k):
				if x != nil && x != "" {
					v[k] = redacted
				}
			case sensitiveHeader && k != "name":
				if _, ok := x.(string); ok {
					v[k] = redacted
				}
			default:
				v[k] = redact(x)
			}
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = redact(x)
		}
		return v
	case string:
		return redactURL(v)
	}
	return doc
}

// credentialHeaders are header names whose values are credentials.
var credentialHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"x-api-key": true, "x-auth-token": true,
}

// secretField reports whether a config field of this name holds a secret.
func secretField(name string) bool {
	n := strings.ToLower(name)
	if strings.HasSuffix(n, "_file") || strings.HasSuffix(n, "_files") {
		return false
	}
	for _, w := range []string{"secret", "password", "passwd", "token", "hmac", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return n == "key" || n == "keys" || strings.HasSuffix(n, "_key") || strings.HasSuffix(n, "_keys")
}

// redactURL hides the password and the query of an http(s) URL; any other
// string is returned as it is.
func redactURL(s string) string {
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	_, hasPassword := u.User.Password()
	if !hasPassword && u.RawQuery == "" && !u.ForceQuery {
		return s
	}
	q := u.RawQuery != ""
	u.RawQuery, u.ForceQuery = "", false
	if hasPassword {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	out := u.String()
	if q {
		out += "?" + redacted
	}
	return out
}
