// Package configs holds edge's example configurations. Default, the one
// `edge run` serves when no -c is given, is embedded in the binary; the
// other files are examples users copy, and a test validates every one.
package configs

import _ "embed"

// Default is the embedded default config: a listener on 127.0.0.1:8080
// with a few routes that show edge's features without any other service.
//
//go:embed default.yaml
var Default []byte
