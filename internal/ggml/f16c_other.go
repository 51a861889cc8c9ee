//go:build !amd64

package ggml

func hasF16C() bool { return false }
