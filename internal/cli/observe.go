package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/docker/go-units"
	mcontainer "github.com/moby/moby/api/types/container"
	mvolume "github.com/moby/moby/api/types/volume"
	"github.com/spf13/cobra"
)

func cpuPercent(s mcontainer.StatsResponse) float64 {
	cpu := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	sys := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	if cpu <= 0 || sys <= 0 {
		return 0
	}
	return cpu / sys * float64(s.CPUStats.OnlineCPUs) * 100
}

func (a *app) statsCmd() *cobra.Command {
	var noStream, jsonOut bool
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] CONTAINER...",
		Short: "Show containers' CPU, memory and process use (streams until interrupted)",
		Example: `  flick stats --no-stream sensor
  flick stats --json sensor | jq -c '{cpu: .cpu_stats.cpu_usage.total_usage, mem: .memory_stats.usage}'`,
		Args: minArgs(1, "at least one container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"stream": {"1"}}
			if noStream {
				q.Set("stream", "0")
			}
			// One stream per container, merged line by line.
			type sample struct {
				s   mcontainer.StatsResponse
				err error
			}
			out := make(chan sample)
			for _, id := range args {
				go func() {
					resp, err := c.Do(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(id)+"/stats", q, nil, nil)
					if err != nil {
						out <- sample{err: err}
						return
					}
					defer resp.Body.Close()
					dec := json.NewDecoder(resp.Body)
					for {
						var s mcontainer.StatsResponse
						if err := dec.Decode(&s); err != nil {
							out <- sample{err: errEnd}
							return
						}
						out <- sample{s: s}
					}
				}()
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			if !jsonOut {
				fmt.Fprintln(tw, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tPIDS")
			}
			open := len(args)
			var first error
			for open > 0 {
				smp := <-out
				if smp.err != nil {
					open--
					if smp.err != errEnd && first == nil {
						first = smp.err
						fmt.Fprintln(a.stderr, "Error:", smp.err)
					}
					continue
				}
				s := smp.s
				if jsonOut {
					json.NewEncoder(a.stdout).Encode(s)
					continue
				}
				mem := float64(0)
				if s.MemoryStats.Limit > 0 {
					mem = float64(s.MemoryStats.Usage) / float64(s.MemoryStats.Limit) * 100
				}
				id := s.ID
				if len(id) > 12 {
					id = id[:12]
				}
				fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%s / %s\t%.2f%%\t%d\n", id, strings.TrimPrefix(s.Name, "/"), cpuPercent(s),
					units.BytesSize(float64(s.MemoryStats.Usage)), units.BytesSize(float64(s.MemoryStats.Limit)), mem, s.PidsStats.Current)
				tw.Flush()
			}
			return first
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the Docker API's stats objects, one per line")
	return cmd
}

type endErr struct{}

func (endErr) Error() string { return "end" }

var errEnd error = endErr{}

func (a *app) topCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER",
		Short: "List a container's processes",
		Args:  exactArgs(1, "a container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var top mcontainer.TopResponse
			if err := c.JSON(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/top", nil, nil, &top); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, strings.Join(top.Titles, "\t"))
			for _, p := range top.Processes {
				fmt.Fprintln(tw, strings.Join(p, "\t"))
			}
			return tw.Flush()
		},
	}
}

func (a *app) containerGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Manage containers (also: flick run, ps, logs, stop, rm...)"}
	var force bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force {
				return usageError{fmt.Errorf("this removes every stopped container: confirm with -f")}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var rep mcontainer.PruneReport
			if err := c.JSON(cmd.Context(), http.MethodPost, "/containers/prune", nil, nil, &rep); err != nil {
				return err
			}
			for _, id := range rep.ContainersDeleted {
				fmt.Fprintln(a.stdout, id)
			}
			fmt.Fprintf(a.stdout, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.SpaceReclaimed)))
			return nil
		},
	}
	prune.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	ls := a.psCmd()
	ls.Use = "ls [OPTIONS]"
	cmd.AddCommand(prune, ls)
	return cmd
}

func (a *app) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage named volumes (created by -v NAME:/path)"}
	var jsonOut, force, all bool
	ls := &cobra.Command{
		Use:  "ls",
		Args: cobra.NoArgs, Short: "List volumes",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var l mvolume.ListResponse
			if err := c.JSON(cmd.Context(), http.MethodGet, "/volumes", nil, nil, &l); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, l.Volumes)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "DRIVER\tVOLUME NAME")
			for _, v := range l.Volumes {
				fmt.Fprintf(tw, "%s\t%s\n", v.Driver, v.Name)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	rm := &cobra.Command{
		Use: "rm VOLUME...", Short: "Remove volumes no container uses",
		Args: minArgs(1, "at least one volume name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if force {
				q.Set("force", "1")
			}
			for _, v := range args {
				if err := c.JSON(cmd.Context(), http.MethodDelete, "/volumes/"+url.PathEscape(v), q, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, v)
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "no error if the volume does not exist")
	prune := &cobra.Command{
		Use: "prune [-a]", Short: "Remove the anonymous volumes no container uses (-a: named ones too)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("filters", `{"all":["true"]}`)
			}
			var rep mvolume.PruneReport
			if err := c.JSON(cmd.Context(), http.MethodPost, "/volumes/prune", q, nil, &rep); err != nil {
				return err
			}
			for _, v := range rep.VolumesDeleted {
				fmt.Fprintln(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.SpaceReclaimed)))
			return nil
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "remove unused named volumes")
	cmd.AddCommand(ls, rm, prune)
	return cmd
}
