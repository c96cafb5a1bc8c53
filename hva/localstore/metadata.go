package localstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// MetadataDriveKiB is the size of the metadata drive (10 MiB, as the
// source's).
const MetadataDriveKiB = 10 * 1024

// MetadataLabel is the vfat label the guest finds the drive by.
const MetadataLabel = "METADATA"

// MACDir is the directory name of a vnic under
// meta-data/network/interfaces/macs/: aa-bb-cc-dd-ee-ff, lower case.
// FAT cannot hold ':' in a name (mtools refuses it), so the drive spells
// MACs with dashes, as Wakame-vdc's did; the guest image reads it so.
func MACDir(hex12 string) (string, error) {
	mac, err := hypervisor.FormatMAC(hex12)
	return strings.ReplaceAll(mac, ":", "-"), err
}

// Items are the files of an instance's metadata drive, by path from the
// drive's root, each holding the bare value (no trailing newline):
//
//	meta-data/{instance-id,local-hostname,hostname,x-account-id}
//	meta-data/public-keys/0/openssh-key   (with an ssh key)
//	meta-data/first-boot                  (empty, first boot only)
//	meta-data/network/interfaces/macs/<mac>/{device-number,local-ipv4s,
//	    x-netmask,x-prefix,x-network,x-broadcast,x-gateway,x-dns,x-metric}
//	meta-data/<key>                       (the instance's extra metadata)
//	user-data
//
// metadata.yml, every item as "key: value", is added when the drive is
// written.
func Items(v *proto.InstanceView, firstBoot bool) map[string]string {
	items := map[string]string{
		"meta-data/instance-id":    v.ID,
		"meta-data/local-hostname": v.Hostname,
		"meta-data/hostname":       v.Hostname,
		"meta-data/x-account-id":   v.AccountID,
		"user-data":                v.UserData,
	}
	if v.SshPublicKey != "" {
		items["meta-data/public-keys/0/openssh-key"] = v.SshPublicKey
	}
	if firstBoot {
		items["meta-data/first-boot"] = ""
	}
	for _, vif := range v.Vifs {
		dir, err := MACDir(vif.MacAddr)
		if err != nil {
			continue // the manager only hands out valid MACs
		}
		p := "meta-data/network/interfaces/macs/" + dir + "/"
		items[p+"device-number"] = strconv.Itoa(vif.DeviceIndex)
		items[p+"local-ipv4s"] = deref(vif.IPv4Address)
		nw := vif.Network
		if nw == nil {
			continue
		}
		items[p+"x-network"] = nw.IPv4Network
		items[p+"x-prefix"] = strconv.Itoa(nw.Prefix)
		items[p+"x-netmask"], items[p+"x-broadcast"] = maskAndBroadcast(nw.IPv4Network, nw.Prefix)
		items[p+"x-gateway"] = deref(nw.IPv4Gw)
		items[p+"x-dns"] = deref(nw.DNSServer)
		items[p+"x-metric"] = strconv.Itoa(nw.Metric)
	}
	for k, val := range extraItems(v.Metadata) {
		if _, taken := items["meta-data/"+k]; !taken {
			items["meta-data/"+k] = val
		}
	}
	return items
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// maskAndBroadcast are the dotted netmask and the broadcast address of a
// network.
func maskAndBroadcast(network string, prefix int) (string, string) {
	addr, err := netip.ParseAddr(network)
	if err != nil || !addr.Is4() || prefix < 0 || prefix > 32 {
		return "", ""
	}
	mask := uint32(0xffffffff) << (32 - prefix)
	if prefix == 0 {
		mask = 0
	}
	a := addr.As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	return dotted(mask), dotted(n&mask | ^mask)
}

func dotted(x uint32) string {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}).String()
}

// extraItems reads the instance's extra metadata (a JSON object) as items;
// keys that would leave meta-data/ are dropped.
func extraItems(raw json.RawMessage) map[string]string {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	out := map[string]string{}
	for k, val := range m {
		clean := path.Clean("/" + k)[1:]
		if clean == "" || clean != k {
			continue
		}
		switch x := val.(type) {
		case string:
			out[k] = x
		case nil:
			out[k] = ""
		default:
			b, _ := json.Marshal(x)
			out[k] = string(b)
		}
	}
	return out
}

// writeMetadataDrive writes the drive to path (replacing it): a raw disk
// image with a vfat filesystem over the whole disk, label METADATA, made
// with mkfs.vfat and mtools without mounting anything.
func (s *Store) writeMetadataDrive(ctx context.Context, img string, items map[string]string) error {
	stage, err := os.MkdirTemp(filepath.Dir(img), ".metadata-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	tree := filepath.Join(stage, "tree")
	yml, err := yaml.Marshal(items)
	if err != nil {
		return fmt.Errorf("metadata.yml: %w", err)
	}
	files := map[string]string{"metadata.yml": string(yml)}
	for k, v := range items {
		files[k] = v
	}
	for name, value := range files {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(value), 0o640); err != nil {
			return err
		}
	}
	tmp := filepath.Join(stage, MetadataImage)
	if err := s.run(ctx, s.cfg.MkfsVfat, "-C", "-n", MetadataLabel, tmp, strconv.Itoa(MetadataDriveKiB)); err != nil {
		return err
	}
	entries, err := os.ReadDir(tree)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, filepath.Join(tree, e.Name()))
	}
	sort.Strings(names)
	args := append([]string{"-s", "-i", tmp}, names...)
	if err := s.run(ctx, s.cfg.Mcopy, append(args, "::/")...); err != nil {
		return err
	}
	// mcopy skips (or renames) names FAT cannot hold and still succeeds:
	// check that every file arrived under its own name.
	out, err := s.output(ctx, s.cfg.Mdir, "-/", "-b", "-i", tmp, "::/")
	if err != nil {
		return err
	}
	got := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "::/"); ok && p != "" && !strings.HasSuffix(p, "/") {
			got[p] = true
		}
	}
	for name := range files {
		if !got[name] {
			return fmt.Errorf("metadata drive: %s did not make it onto the vfat filesystem (a name FAT cannot hold?)", name)
		}
	}
	return os.Rename(tmp, img)
}
