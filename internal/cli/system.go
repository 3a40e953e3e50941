package cli

import (
	"bufio"
	"fmt"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/image"
	"io"
	"net/http"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/dockerapi"
	mimage "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/spf13/cobra"
)

func (a *app) systemCheckCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the store: re-hash every blob and layer tree, check every image, layer and tag against the metadata",
		Long: `Verify the whole image store without changing it: every blob is re-hashed
against its name, every layer's extracted files are re-read and checked
against the tree digest recorded when it was committed (paths, modes,
owners, sizes, CRC-32C of contents, symlink targets), every image's manifest
and config must exist and agree with its record, every layer an image uses
must be committed with its directory and recorded size, every tag must name
an image. Data no record accounts for
(left by a crash) is listed; the daemon removes it at its next start.
Exits 1 when a problem other than such leftovers is found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var rep image.CheckReport
			if err := c.JSON(cmd.Context(), http.MethodGet, "/flick/v1/system/check", nil, nil, &rep); err != nil {
				return err
			}
			if jsonOut {
				printJSON(a.stdout, rep)
			} else {
				fmt.Fprintf(a.stdout, "checked %d blobs and %d layer trees (%s re-read), %d layers, %d images, %d tags\n", rep.Blobs, rep.TreesHashed, units.BytesSize(float64(rep.Bytes)), rep.Layers, rep.Images, rep.Tags)
				for _, p := range rep.Problems {
					fmt.Fprintf(a.stdout, "%-14s %s: %s\n", p.Kind, p.Object, p.Detail)
				}
			}
			serious := 0
			for _, p := range rep.Problems {
				if !strings.HasPrefix(p.Kind, "orphan-") {
					serious++
				}
			}
			if serious > 0 {
				return fmt.Errorf("%d problem(s) found in the store", serious)
			}
			if !jsonOut {
				fmt.Fprintln(a.stdout, "store OK")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

func (a *app) systemCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage the Flick engine"}
	cmd.AddCommand(a.systemCheckCmd())
	var jsonOut bool
	df := &cobra.Command{
		Use:   "df",
		Short: "Show disk usage of images and layers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var du struct {
				LayersSize int64
				Images     []mimage.Summary
			}
			if err := c.JSON(cmd.Context(), http.MethodGet, "/system/df", nil, nil, &du); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, du)
			}
			var reclaim int64
			for _, img := range du.Images {
				if len(img.RepoTags) == 0 {
					reclaim += img.Size - img.SharedSize
				}
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
			fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s\n", len(du.Images), 0, units.HumanSize(float64(du.LayersSize)), units.HumanSize(float64(reclaim)))
			return tw.Flush()
		},
	}
	df.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.AddCommand(df, a.infoCmd())
	return cmd
}

func (a *app) versionCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the daemon's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := struct {
				Client map[string]string
				Server *system.VersionResponse `json:",omitempty"`
			}{Client: map[string]string{"Version": a.build.Version, "GitCommit": a.build.GitCommit, "GoVersion": runtime.Version(),
				"ApiVersion": dockerapi.APIVersion, "Os": runtime.GOOS, "Arch": runtime.GOARCH}}
			var srvErr error
			if c, err := a.client(); err == nil {
				var v system.VersionResponse
				if srvErr = c.JSON(cmd.Context(), http.MethodGet, "/version", nil, nil, &v); srvErr == nil {
					out.Server = &v
				}
			}
			if jsonOut {
				if err := printJSON(a.stdout, out); err != nil {
					return err
				}
				return srvErr
			}
			fmt.Fprintf(a.stdout, "Client:\n Version:\t%s\n API version:\t%s\n Go version:\t%s\n OS/Arch:\t%s/%s\n",
				a.build.Version, dockerapi.APIVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if out.Server != nil {
				s := out.Server
				fmt.Fprintf(a.stdout, "\nServer: %s\n Version:\t%s\n API version:\t%s (minimum %s)\n Go version:\t%s\n OS/Arch:\t%s/%s\n Kernel:\t%s\n",
					s.Platform.Name, s.Version, s.APIVersion, s.MinAPIVersion, s.GoVersion, s.Os, s.Arch, s.KernelVersion)
			}
			return srvErr
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func (a *app) infoCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show engine-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var info system.Info
			if err := c.JSON(cmd.Context(), http.MethodGet, "/info", nil, nil, &info); err != nil {
				return err
			}
			var rx flickapi.Info
			if err := c.JSON(cmd.Context(), http.MethodGet, flickapi.Prefix+"/info", nil, nil, &rx); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, struct {
					system.Info
					Reflex flickapi.Info `json:"Reflex"`
				}{info, rx})
			}
			fmt.Fprintf(a.stdout, "Server Version: %s\nImages: %d\nStorage Driver: %s\nCgroup Version: %s\nKernel Version: %s\nOperating System: %s\nArchitecture: %s\nCPUs: %d\nTotal Memory: %s\nName: %s\nData Root: %s\n",
				info.ServerVersion, info.Images, info.Driver, info.CgroupVersion, info.KernelVersion, info.OperatingSystem,
				info.Architecture, info.NCPU, units.BytesSize(float64(info.MemTotal)), info.Name, info.DockerRootDir)
			fmt.Fprintf(a.stdout, "Functions: %d\nMQTT Broker: %s\nHTTP Triggers: %s\nMetrics: %s\n",
				rx.Functions, orNone(strings.Join(rx.MQTT, ", "), "(no listeners: --mqtt-listen)"),
				orNone(rx.HTTP, "(API socket only: /flick/v1/hooks/)"), orNone(rx.Metrics, "(API socket only: /metrics)"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON (the Docker API's info object)")
	return cmd
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// serverKey is the key docker config.json uses for a registry.
func serverKey(server string) string {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")
	if h == "" || h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io" || h == "index.docker.io/v1" {
		return "https://index.docker.io/v1/"
	}
	return h
}

func (a *app) loginCmd() *cobra.Command {
	var user, pass string
	var passStdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry (stores credentials in ~/.docker/config.json)",
		Long: `Check credentials with the registry through the daemon, then store them in
the docker config.json (or its credential helper), exactly where 'docker login'
keeps them: flick and docker share logins.`,
		Example: "  flick login registry.lan:5000 -u ci --password-stdin < token.txt",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			if passStdin {
				b, err := io.ReadAll(bufio.NewReader(cmd.InOrStdin()))
				if err != nil {
					return err
				}
				pass = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" || pass == "" {
				return usageError{fmt.Errorf("give a username (-u) and a password (-p or --password-stdin)")}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			key := serverKey(server)
			var ok struct{ Status string }
			body := map[string]string{"username": user, "password": pass, "serveraddress": key}
			if err := c.JSON(cmd.Context(), http.MethodPost, "/auth", nil, body, &ok); err != nil {
				return err
			}
			cf, err := config.Load(config.Dir())
			if err != nil {
				return fmt.Errorf("read docker config: %w", err)
			}
			if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{Username: user, Password: pass, ServerAddress: key}); err != nil {
				return fmt.Errorf("store credentials: %w", err)
			}
			fmt.Fprintln(a.stdout, ok.Status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "username")
	cmd.Flags().StringVarP(&pass, "password", "p", "", "password (prefer --password-stdin: it stays out of shell history)")
	cmd.Flags().BoolVar(&passStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Forget a registry's stored credentials",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			cf, err := config.Load(config.Dir())
			if err != nil {
				return err
			}
			key := serverKey(server)
			if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Removing login credentials for %s\n", key)
			return nil
		},
	}
}
