// Command vdc-manage is the operator CLI of a vdc manager; the command tree
// lives in package manage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vdc-project/vdc/manager/manage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := manage.Run(ctx, os.Args[1:], os.Stdout, manage.Config{API: os.Getenv("VDC_API"), Token: os.Getenv("VDC_API_TOKEN"), Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
