package api

import "github.com/rampart-fw/rampart/protocol"

// Protocol is one entry of GET /vpc/reference/protocols.
type Protocol struct {
	Number        int    `json:"number"`
	Name          string `json:"name"`    // RouterOS's name
	Keyword       string `json:"keyword"` // IANA keyword
	SupportsPorts bool   `json:"supports_ports"`
}

// Service is one entry of GET /vpc/reference/services.
type Service struct {
	Name     string `json:"name"`
	Protocol int    `json:"protocol"`
	Port     string `json:"port"`
}

// protocols are the IP protocols RouterOS accepts by name in
// /ip/firewall/filter protocol= (RouterOS documentation, "Firewall: filter",
// property protocol), with their IANA numbers and keywords (IANA "Assigned
// Internet Protocol Numbers"), plus 0 for every protocol. supports_ports
// follows protocol.PortProtocols, the protocols RouterOS takes a port with.
var protocols = func() []Protocol {
	list := []Protocol{
		{0, "all", "ALL", false},
		{1, "icmp", "ICMP", false},
		{2, "igmp", "IGMP", false},
		{3, "ggp", "GGP", false},
		{4, "ipencap", "IPv4", false},
		{5, "st", "ST", false},
		{6, "tcp", "TCP", false},
		{8, "egp", "EGP", false},
		{12, "pup", "PUP", false},
		{17, "udp", "UDP", false},
		{20, "hmp", "HMP", false},
		{22, "xns-idp", "XNS-IDP", false},
		{27, "rdp", "RDP", false},
		{29, "iso-tp4", "ISO-TP4", false},
		{33, "dccp", "DCCP", false},
		{36, "xtp", "XTP", false},
		{37, "ddp", "DDP", false},
		{38, "idpr-cmtp", "IDPR-CMTP", false},
		{41, "ipv6-encap", "IPv6", false},
		{43, "ipv6-route", "IPv6-Route", false},
		{44, "ipv6-frag", "IPv6-Frag", false},
		{46, "rsvp", "RSVP", false},
		{47, "gre", "GRE", false},
		{50, "ipsec-esp", "ESP", false},
		{51, "ipsec-ah", "AH", false},
		{58, "icmpv6", "IPv6-ICMP", false},
		{59, "ipv6-nonxt", "IPv6-NoNxt", false},
		{60, "ipv6-opts", "IPv6-Opts", false},
		{73, "rspf", "CPHB", false},
		{81, "vmtp", "VMTP", false},
		{89, "ospf", "OSPFIGP", false},
		{94, "ipip", "IPIP", false},
		{97, "etherip", "ETHERIP", false},
		{98, "encap", "ENCAP", false},
		{103, "pim", "PIM", false},
		{112, "vrrp", "VRRP", false},
		{115, "l2tp", "L2TP", false},
		{132, "sctp", "SCTP", false},
		{136, "udp-lite", "UDPLite", false},
	}
	for i := range list {
		_, list[i].SupportsPorts = protocol.PortProtocols[list[i].Number]
	}
	return list
}()

// services are common services, for clients that offer a picker.
var services = []Service{
	{"dns", 17, "53"},
	{"dns-tcp", 6, "53"},
	{"ftp", 6, "21"},
	{"http", 6, "80"},
	{"https", 6, "443"},
	{"http-alt", 6, "8080"},
	{"imap", 6, "143"},
	{"imaps", 6, "993"},
	{"ipsec-ike", 17, "500"},
	{"ipsec-nat-t", 17, "4500"},
	{"l2tp", 17, "1701"},
	{"ldap", 6, "389"},
	{"ldaps", 6, "636"},
	{"mqtt", 6, "1883"},
	{"mqtts", 6, "8883"},
	{"mssql", 6, "1433"},
	{"mysql", 6, "3306"},
	{"ntp", 17, "123"},
	{"openvpn", 17, "1194"},
	{"pop3s", 6, "995"},
	{"postgresql", 6, "5432"},
	{"rdp", 6, "3389"},
	{"redis", 6, "6379"},
	{"routeros-api", 6, "8728"},
	{"routeros-api-ssl", 6, "8729"},
	{"smtp", 6, "25"},
	{"smtps", 6, "465"},
	{"snmp", 17, "161"},
	{"ssh", 6, "22"},
	{"submission", 6, "587"},
	{"syslog", 17, "514"},
	{"telnet", 6, "23"},
	{"winbox", 6, "8291"},
	{"wireguard", 17, "51820"},
}
