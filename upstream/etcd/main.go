// The etcd server binary, built from go.etcd.io/etcd/server/v3 inside a wrapper module (scripts/upstream.sh) because
// etcd's own go.mod files carry replace lines that `go install module@version` refuses.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
