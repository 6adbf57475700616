package protocol

import "strconv"

// IPProtocol is one IP protocol RouterOS knows by name in /ip/firewall
// filter's protocol= (RouterOS documentation, "Firewall: filter", property
// protocol; the console's `protocol=?`), with its IANA number and keyword
// (IANA "Assigned Internet Protocol Numbers").
type IPProtocol struct {
	Number  int
	Name    string // as RouterOS accepts and prints it
	Keyword string // IANA keyword
}

// 58 is icmpv6 in /ipv6/firewall/filter, the name RouterOS's own IPv6
// defconf uses (`/system default-configuration print`, dumped from
// RouterOS 6.46.4: gist.github.com/ebababi/edad2fcc586961ae55b24686974176ad,
// "accept ICMPv6" ... protocol=icmpv6). It exists in IPv6 only, as icmp (1)
// exists in IPv4 only (ProtocolFamilies).
//
// IPProtocols is the one table of protocol names for the agent (which
// reads what a router prints) and the API (GET /vpc/reference/protocols),
// by number. rossim keeps its own copy as the judge of RouterOS, and
// rossim's TestProtocolNamesAreProtocols holds the two equal.
var IPProtocols = []IPProtocol{
	{1, "icmp", "ICMP"},
	{2, "igmp", "IGMP"},
	{3, "ggp", "GGP"},
	{4, "ipencap", "IPv4"},
	{5, "st", "ST"},
	{6, "tcp", "TCP"},
	{8, "egp", "EGP"},
	{12, "pup", "PUP"},
	{17, "udp", "UDP"},
	{20, "hmp", "HMP"},
	{22, "xns-idp", "XNS-IDP"},
	{27, "rdp", "RDP"},
	{29, "iso-tp4", "ISO-TP4"},
	{33, "dccp", "DCCP"},
	{36, "xtp", "XTP"},
	{37, "ddp", "DDP"},
	{38, "idpr-cmtp", "IDPR-CMTP"},
	{41, "ipv6-encap", "IPv6"},
	{43, "ipv6-route", "IPv6-Route"},
	{44, "ipv6-frag", "IPv6-Frag"},
	{46, "rsvp", "RSVP"},
	{47, "gre", "GRE"},
	{50, "ipsec-esp", "ESP"},
	{51, "ipsec-ah", "AH"},
	{58, "icmpv6", "IPv6-ICMP"},
	{59, "ipv6-nonxt", "IPv6-NoNxt"},
	{60, "ipv6-opts", "IPv6-Opts"},
	{73, "rspf", "CPHB"},
	{81, "vmtp", "VMTP"},
	{89, "ospf", "OSPFIGP"},
	{94, "ipip", "IPIP"},
	{97, "etherip", "ETHERIP"},
	{98, "encap", "ENCAP"},
	{103, "pim", "PIM"},
	{112, "vrrp", "VRRP"},
	{115, "l2tp", "L2TP"},
	{132, "sctp", "SCTP"},
	{136, "udp-lite", "UDPLite"},
}

var (
	protocolByNumber = map[int]string{}
	protocolByName   = map[string]int{}
)

func init() {
	for _, p := range IPProtocols {
		protocolByNumber[p.Number], protocolByName[p.Name] = p.Name, p.Number
	}
}

// IPProtocolName is RouterOS's name of protocol n, if it has one.
func IPProtocolName(n int) (string, bool) {
	name, ok := protocolByNumber[n]
	return name, ok
}

// IPProtocolNumber reads a protocol as RouterOS prints it: a name of
// IPProtocols or a decimal number 0-255.
func IPProtocolNumber(s string) (int, bool) {
	if n, ok := protocolByName[s]; ok {
		return n, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}
