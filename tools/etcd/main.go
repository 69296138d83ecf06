// Command etcd is etcd's own server entry point (etcdmain.Main), built from the
// published go.etcd.io/etcd/server/v3 v3.6.5 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
