//go:build tools

// Package tools pins the Ethereum client the Ethereum example runs (playbooks/examples/
// ethereum.yml). Nothing here is compiled into the project; scripts/build-geth.sh builds
// this import path into a cache outside the repository.
package tools

import (
	_ "github.com/ethereum/go-ethereum/cmd/geth"
)
