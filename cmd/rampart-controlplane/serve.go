package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rampart-controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	bindConfig(fs, &c)
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	return errors.New("serve: not assembled yet")
}
