package cli

import (
	"fmt"
	"os"
	"runtime/debug"
	"text/tabwriter"

	"github.com/docker/go-units"

	"github.com/flick-edge/flick/internal/deltabuild"
	"github.com/flick-edge/flick/internal/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

func (a *app) deltaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delta",
		Short: "Make image deltas, so hubs download only what changed",
		Long: `A delta turns the content of an image a hub already holds (BASE) into the
layers of a new release (TARGET). It is stored in TARGET's repository as an
OCI artifact whose subject is TARGET, so any registry can hold it (registries
without the OCI referrers API get the spec's "sha256-<hex>" fallback tag).
'flick pull TARGET' (and 'docker pull' through Flick) finds it, applies it from
local layers, and verifies every rebuilt layer against TARGET's diffIDs.`,
	}
	cmd.AddCommand(a.deltaCreateCmd())
	return cmd
}

func (a *app) deltaCreateCmd() *cobra.Command {
	var push, insecure, jsonOut bool
	var platform, tmp string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] BASE TARGET",
		Short: "Compute the delta from BASE to TARGET (and push it beside TARGET)",
		Long: `Read BASE and TARGET from their registry, compute a delta for every layer of
TARGET that BASE lacks, prove each one by rebuilding the layer and checking its
diffID, and report the bytes a hub would download with it and without it.
With --push, publish it as an artifact referring to TARGET. No daemon is needed:
run it in CI after pushing a release, once per base you want to serve (the
last few releases are typical; hubs pick the smallest delta they can use).

Files are matched by content across all of BASE's layers (moved and renamed
files cost nothing), changed files are sent as zstd patches against the old
file, and new ones compressed. Credentials come from docker config.json.`,
		Example: `  flick delta create registry.lan:5000/app:1.4 registry.lan:5000/app:1.5
  flick delta create --push registry.lan:5000/app:1.4 registry.lan:5000/app:1.5
  flick delta create --platform linux/arm64 --push app:1.4 app:1.5
  flick delta create --json app:1.4 app:1.5 | jq .deltaPullBytes`,
		Args: exactArgs(2, "a base and a target image reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Getenv("GOMEMLIMIT") == "" {
				// Best-level zstd encoders and suffix arrays make garbage
				// in bursts; a soft limit makes the collector keep up
				// instead of letting the heap double. GOMEMLIMIT overrides.
				debug.SetMemoryLimit(512 << 20)
			}
			o := deltabuild.Options{Base: args[0], Target: args[1], Push: push, Insecure: insecure, TempDir: tmp}
			if platform != "" {
				p, err := oci.ParsePlatform(platform)
				if err != nil {
					return usageError{err}
				}
				o.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
			}
			if !jsonOut {
				o.Progress = func(s string) { fmt.Fprintln(a.stderr, s) }
			}
			res, err := deltabuild.Create(cmd.Context(), o)
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, res)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LAYER\tLAYER PULL\tDELTA\tCOPIED\tPATCHED\tLITERAL")
			for _, l := range res.Layers {
				d := units.HumanSize(float64(l.DeltaBytes))
				if l.Skipped != "" {
					d = "- (" + l.Skipped + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d files\t%d files\t%s\n", shortDigest(l.DiffID), units.HumanSize(float64(l.LayerBytes)), d,
					l.Stats.CopiedFiles, l.Stats.PatchFiles, units.HumanSize(float64(l.Stats.Literal)))
			}
			tw.Flush()
			switch {
			case res.LayerPull == 0:
				fmt.Fprintln(a.stdout, "TARGET has no layer that BASE lacks: a hub holding BASE downloads nothing but manifests.")
			default:
				fmt.Fprintf(a.stdout, "Hub download: %s with the delta, %s without (%.1fx less).\n",
					units.HumanSize(float64(res.DeltaPull)), units.HumanSize(float64(res.LayerPull)), float64(res.LayerPull)/float64(max(res.DeltaPull, 1)))
			}
			if res.Pushed {
				fmt.Fprintf(a.stdout, "Pushed %s\n", res.Artifact)
			} else if res.Artifact != "" {
				fmt.Fprintln(a.stdout, "Not pushed (add --push to publish it beside TARGET).")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&push, "push", false, "publish the delta in TARGET's repository, referring to TARGET")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "use plain HTTP for this registry (loopback registries always may)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	cmd.Flags().StringVar(&platform, "platform", "", "which platform of a multi-platform image (default linux/amd64)")
	cmd.Flags().StringVar(&tmp, "tmp-dir", "", "where to spool the base's layers (default $TMPDIR)")
	return cmd
}
