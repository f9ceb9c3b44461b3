package statuspage

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector turns the View into Prometheus metrics on every scrape, so the numbers are the
// ones the page shows and nothing keeps a second copy of the state.
type collector struct {
	src Source

	lastSuccess, lastDuration, lastBytes, transferred, backupSize, snapSize, snapCount,
	failures, connected, busy, overdue *prometheus.Desc
}

func newCollector(src Source) *collector {
	labels := []string{"udid", "device"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("snapback_"+name, help, append(labels[:2:2], extra...), nil)
	}
	return &collector{
		src:          src,
		lastSuccess:  d("last_success_timestamp_seconds", "When the last successful backup of the device started (Unix time)."),
		lastDuration: d("last_run_duration_seconds", "How long the device's last backup run took."),
		lastBytes:    d("last_run_transferred_bytes", "Bytes the device sent in its last successful run."),
		transferred:  d("transferred_bytes_total", "Bytes received from the device by successful runs since Snapback started."),
		backupSize:   d("backup_size_bytes", "Size of the device's latest complete backup."),
		snapSize:     d("snapshots_size_bytes", "Bytes the device's earlier snapshots hold on their own (not shared with the latest backup)."),
		snapCount:    d("snapshots", "Number of earlier snapshots kept for the device."),
		failures:     d("failures_total", "Failed backup runs since Snapback started, by failure class.", "class"),
		connected:    d("device_connected", "1 while the device is connected (USB or Wi-Fi)."),
		busy:         d("run_in_progress", "1 while a backup of the device is queued or running."),
		overdue:      d("overdue", "1 while the device has gone too long without a successful backup."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lastSuccess, c.lastDuration, c.lastBytes, c.transferred, c.backupSize,
		c.snapSize, c.snapCount, c.failures, c.connected, c.busy, c.overdue} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := c.src.View(ctx)
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	for _, d := range v.Devices {
		l := []string{d.UDID, d.Name}
		g := func(desc *prometheus.Desc, val float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, val, append(l[:2:2], extra...)...)
		}
		if !d.LastSuccess.IsZero() {
			g(c.lastSuccess, float64(d.LastSuccess.UnixMilli())/1000)
		}
		if d.LastRunDuration > 0 {
			g(c.lastDuration, d.LastRunDuration.Seconds())
			g(c.lastBytes, float64(d.LastRunBytes))
		}
		ch <- prometheus.MustNewConstMetric(c.transferred, prometheus.CounterValue, float64(d.BytesTransferred), l...)
		if d.LastBackup != nil {
			g(c.backupSize, float64(d.LastBackup.Size))
		}
		g(c.snapSize, float64(d.SnapshotsSize))
		g(c.snapCount, float64(len(d.Snapshots)))
		for class, n := range d.FailuresByClass {
			ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(n), d.UDID, d.Name, class)
		}
		g(c.connected, b(d.Connected))
		g(c.busy, b(d.Busy))
		g(c.overdue, b(d.Overdue))
	}
}
