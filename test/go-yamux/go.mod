module warren.test/go-yamux

go 1.19

require github.com/hashicorp/yamux v0.0.0-00010101000000-000000000000

// Debian's golang-github-hashicorp-yamux-dev: built offline, never fetched.
replace github.com/hashicorp/yamux => /usr/share/gocode/src/github.com/hashicorp/yamux
