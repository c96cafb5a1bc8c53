package filtertest

import "github.com/vdc-project/vdc/proto"

func ptr(s string) *string { return &s }

// SampleData is the netfilter data of a host with three vnics on DC network
// "public": a web server in sg-web (tcp 80 from anywhere, 8000-8010 from
// 10.0.0.0/8, ssh from sg-admin, ping), an admin box in sg-admin (udp 53
// and icmp echo from sg-web), and a vnic without an address; sg-admin's
// members include a vnic on another host.
func SampleData() *proto.GetNetfilterDataResponse {
	dcn := &proto.DcNetwork{Name: "public"}
	nw := &proto.Network{ID: "nw-public", IPv4Gw: ptr("192.168.251.1"), DHCPServer: ptr("192.168.251.250")}
	return &proto.GetNetfilterDataResponse{
		Vnics: []proto.VifView{
			{ID: "vif-web00001", MacAddr: "525400000001", IPv4Address: ptr("192.168.251.11"),
				SecurityGroups: []string{"sg-web"}, Network: nw, DcNetwork: dcn},
			{ID: "vif-adm00001", MacAddr: "525400000002", IPv4Address: ptr("192.168.251.21"),
				SecurityGroups: []string{"sg-admin"}, Network: nw, DcNetwork: dcn},
			{ID: "vif-noip0001", MacAddr: "525400000003", SecurityGroups: []string{"sg-web"}, DcNetwork: dcn},
		},
		SecurityGroups: []proto.NetfilterSecurityGroup{
			{ID: "sg-web", Rule: "tcp:80,80,ip4:0.0.0.0\ntcp:8000,8010,ip4:10.0.0.0/8\ntcp:22,22,sg-admin\nicmp:-1,8,ip4:0.0.0.0",
				Members: []proto.NetfilterMember{
					{VifID: "vif-web00001", MacAddr: "525400000001", IPv4Address: ptr("192.168.251.11")},
					{VifID: "vif-noip0001", MacAddr: "525400000003"},
				}, Referencees: []string{"sg-admin"}},
			{ID: "sg-admin", Rule: "udp:53,53,sg-web\nicmp:0,8,sg-web",
				Members: []proto.NetfilterMember{
					{VifID: "vif-adm00001", MacAddr: "525400000002", IPv4Address: ptr("192.168.251.21")},
					{VifID: "vif-adm00002", MacAddr: "525400000004", IPv4Address: ptr("192.168.251.22")},
				}, Referencers: []string{"sg-web"}, Referencees: []string{"sg-web"}},
		},
	}
}
