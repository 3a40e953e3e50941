package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/progress"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	mimage "github.com/moby/moby/api/types/image"
	"github.com/spf13/cobra"
)

// registryAuthHeader encodes the credentials the user's docker config.json
// holds for ref's registry, as the docker CLI sends them.
func registryAuthHeader(ref reference.Ref) string {
	reg, err := name.NewRegistry(ref.Domain())
	if err != nil {
		return ""
	}
	auth, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil || auth == authn.Anonymous {
		return ""
	}
	cfg, err := auth.Authorization()
	if err != nil {
		return ""
	}
	b, _ := json.Marshal(map[string]string{"username": cfg.Username, "password": cfg.Password,
		"identitytoken": cfg.IdentityToken, "registrytoken": cfg.RegistryToken, "serveraddress": ref.Domain()})
	return base64.URLEncoding.EncodeToString(b)
}

func (a *app) pullCmd() *cobra.Command {
	var quiet, jsonOut, noDelta bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry",
		Long: `Pull an image. Layers stream straight from the registry into the store,
verified as they arrive; nothing is visible until every layer and the config
are durable, so an interrupted pull (network, power) leaves the old image in
place. Pull again to resume: layers already committed are not fetched again.

If the registry holds a delta (made by 'flick delta create --push') from an
image this hub already has, Flick downloads the smallest one instead of the
layers, rebuilds the layers from local content, and checks each against the
image's diffIDs; a delta that fails falls back to the layer download.`,
		Example: `  flick pull alpine
  flick pull --platform linux/arm/v7 registry.lan:5000/app:2.1
  flick pull -q app@sha256:4f2b...      # print only the reference
  flick pull --json app | jq .status    # Docker-style JSON progress
  flick pull --no-delta app:2.1         # ignore deltas, download layers`,
		Args: exactArgs(1, "an image reference, e.g. 'flick pull alpine:3.20'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := reference.Parse(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"fromImage": {ref.Name()}}
			if ref.Digest() != "" {
				q.Set("tag", ref.Digest().String())
			} else {
				q.Set("tag", ref.Tag())
			}
			if platform != "" {
				q.Set("platform", platform)
			}
			if noDelta {
				q.Set("nodelta", "1")
			}
			h := http.Header{}
			if auth := registryAuthHeader(ref); auth != "" {
				h.Set("X-Registry-Auth", auth)
			}
			resp, err := c.Do(cmd.Context(), http.MethodPost, "/images/create", q, nil, h)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			res, err := progress.Render(cmd.Context(), resp.Body, a.stdout, progress.Options{Quiet: quiet, JSON: jsonOut})
			if err != nil {
				return err
			}
			if quiet && res.Ref == "" {
				fmt.Fprintln(a.stdout, ref.String())
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image reference")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the daemon's JSON progress stream, one object per line")
	cmd.Flags().StringVar(&platform, "platform", "", "pull for this platform (e.g. linux/arm64, linux/arm/v7) instead of this machine's")
	cmd.Flags().BoolVar(&noDelta, "no-delta", false, "download whole layers even if a delta from a local image exists")
	return cmd
}

func (a *app) listImages(cmd *cobra.Command, all, digests, quiet, jsonOut bool, filters []string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if len(filters) > 0 {
		f := map[string]map[string]bool{}
		for _, kv := range filters {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError{fmt.Errorf("bad filter %q: want key=value, e.g. dangling=true or reference='alpine*'", kv)}
			}
			if f[k] == nil {
				f[k] = map[string]bool{}
			}
			f[k][v] = true
		}
		b, _ := json.Marshal(f)
		q.Set("filters", string(b))
	}
	var imgs []mimage.Summary
	if err := c.JSON(cmd.Context(), http.MethodGet, "/images/json", q, nil, &imgs); err != nil {
		return err
	}
	if jsonOut {
		return printJSON(a.stdout, imgs)
	}
	if quiet {
		for _, img := range imgs {
			fmt.Fprintln(a.stdout, shortID(img.ID))
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 3, ' ', 0)
	if digests {
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
	} else {
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	}
	for _, img := range imgs {
		tags := img.RepoTags
		if len(tags) == 0 {
			tags = []string{"<none>:<none>"}
		}
		dg := "<none>"
		if len(img.RepoDigests) > 0 {
			if _, d, ok := strings.Cut(img.RepoDigests[0], "@"); ok {
				dg = d
			}
		}
		for _, t := range tags {
			repo, tag := splitTag(t)
			created := units.HumanDuration(time.Since(time.Unix(img.Created, 0))) + " ago"
			if img.Created <= 0 {
				created = "N/A"
			}
			if digests {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", repo, tag, dg, shortID(img.ID), created, units.HumanSizeWithPrecision(float64(img.Size), 3))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, shortID(img.ID), created, units.HumanSizeWithPrecision(float64(img.Size), 3))
			}
		}
	}
	return tw.Flush()
}

func splitTag(t string) (string, string) {
	if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
		return t[:i], t[i+1:]
	}
	return t, "<none>"
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (a *app) imagesCmd() *cobra.Command {
	cmd := a.lsCmd()
	cmd.Use = "images [OPTIONS]"
	return cmd
}

func (a *app) lsCmd() *cobra.Command {
	var all, digests, quiet, jsonOut bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "ls [OPTIONS]",
		Short: "List images",
		Example: `  flick images
  flick images --digests
  flick images --json | jq -r '.[].RepoTags[]'
  flick images -f dangling=true -q`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.listImages(cmd, all, digests, quiet, jsonOut, filters)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "show all images (Flick keeps no intermediate images; same as default)")
	f.BoolVar(&digests, "digests", false, "show digests")
	f.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVar(&jsonOut, "json", false, "print JSON (the Docker API's image summaries)")
	f.StringSliceVarP(&filters, "filter", "f", nil, "filter: dangling=true|false, reference=PATTERN, label=KEY[=VALUE]")
	return cmd
}

func (a *app) rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short:   "Remove one or more images",
		Long:    "Remove images. Removing one of several tags only untags; layers no image uses any more are deleted.",
		Example: "  flick rmi alpine\n  flick rmi -f 4f2b1c9e0a1b",
		Args:    minArgs(1, "at least one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var firstErr error
			for _, n := range args {
				var out []mimage.DeleteResponse
				q := url.Values{}
				if force {
					q.Set("force", "1")
				}
				if err := c.JSON(cmd.Context(), http.MethodDelete, "/images/"+n, q, nil, &out); err != nil {
					fmt.Fprintln(a.stderr, "Error:", err)
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				for _, d := range out {
					if d.Untagged != "" {
						fmt.Fprintln(a.stdout, "Untagged:", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintln(a.stdout, "Deleted:", d.Deleted)
					}
				}
			}
			if firstErr != nil {
				return fmt.Errorf("not every image was removed: %w", firstErr)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image referenced by several tags")
	return cmd
}

func (a *app) tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short:   "Give an image another name",
		Example: "  flick tag alpine:3.20 registry.lan:5000/base:stable",
		Args:    exactArgs(2, "a source image and a target name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := reference.Parse(args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"repo": {ref.Name()}, "tag": {ref.Tag()}}
			return c.JSON(cmd.Context(), http.MethodPost, "/images/"+args[0]+"/tag", q, nil, nil)
		},
	}
}

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage images"}
	rm := a.rmiCmd()
	rm.Use = "rm [OPTIONS] IMAGE [IMAGE...]"
	pull := a.pullCmd()
	tag := a.tagCmd()
	cmd.AddCommand(a.lsCmd(), rm, pull, tag, a.pruneCmd(), a.inspectCmd())
	return cmd
}

func (a *app) inspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE [IMAGE...]",
		Short: "Show an image's details as JSON",
		Args:  minArgs(1, "at least one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var all []json.RawMessage
			for _, n := range args {
				var v json.RawMessage
				if err := c.JSON(cmd.Context(), http.MethodGet, "/images/"+n+"/json", nil, nil, &v); err != nil {
					return err
				}
				all = append(all, v)
			}
			return printJSON(a.stdout, all)
		},
	}
}

func (a *app) pruneCmd() *cobra.Command {
	var all, force, jsonOut bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images and layers",
		Long:  "Remove dangling images (no tag), or with --all every image no container uses, then delete layers nothing uses.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !jsonOut {
				fmt.Fprintln(a.stderr, "Removing unused images (pass -f to skip this notice).")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("filters", `{"dangling":{"false":true}}`)
			}
			var rep mimage.PruneReport
			if err := c.JSON(cmd.Context(), http.MethodPost, "/images/prune", q, nil, &rep); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, rep)
			}
			for _, d := range rep.ImagesDeleted {
				if d.Untagged != "" {
					fmt.Fprintln(a.stdout, "untagged:", d.Untagged)
				}
				if d.Deleted != "" {
					fmt.Fprintln(a.stdout, "deleted:", d.Deleted)
				}
			}
			fmt.Fprintf(a.stdout, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not print the notice")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the prune report as JSON")
	return cmd
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%q needs %s.\nUsage: %s\nSee '%s --help'", cmd.CommandPath(), what, cmd.UseLine(), cmd.CommandPath())}
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Errorf("%q needs %s.\nUsage: %s\nSee '%s --help'", cmd.CommandPath(), what, cmd.UseLine(), cmd.CommandPath())}
		}
		return nil
	}
}
