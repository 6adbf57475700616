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

// protocols are 0 for every protocol, then the IP protocols RouterOS knows
// by name (protocol.IPProtocols). supports_ports follows
// protocol.PortProtocols, the protocols RouterOS takes a port with.
var protocols = func() []Protocol {
	list := []Protocol{{0, "all", "ALL", false}}
	for _, p := range protocol.IPProtocols {
		_, ports := protocol.PortProtocols[p.Number]
		list = append(list, Protocol{p.Number, p.Name, p.Keyword, ports})
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
