// Package rossim simulates a MikroTik router running RouterOS 7 as seen
// through its binary API (port 8728): the wire protocol, login, the firewall
// filter and address-list menus with RouterOS's semantics and error texts,
// the interface and system menus the agent reads, and a packet evaluator over
// the simulated firewall. The IPv6 firewall (/ipv6/firewall/filter and
// address-list, with its own defconf) is modelled beside the IPv4 one, and
// the evaluator walks the table of the packet's family. Tests and
// benchmarks of the agent drive it with the real client
// (github.com/go-routeros/routeros/v3) over TCP.
//
// Fidelity rule: when the simulator and a real router disagree, the
// simulator is wrong. Sources are those of /work/shared/reference/routeros.md
// (DESIGN.md section 7 summarises them); tags: [C] confirmed by MikroTik
// documentation or a maintainer's capture, [3P] third party (user reports,
// code run against real routers), [I] inference, unverified. Each behaviour
// carries its source in a comment beside the code as well.
//
// # Using it
//
//	r, err := rossim.Listen("127.0.0.1:0", rossim.Options{User: "api", Password: "pw"})
//	defer r.Close()
//	// point the agent at r.Addr(); afterwards:
//	for _, state := range r.History() {
//		v := state.Evaluate(rossim.Packet{Chain: "input", InInterface: "ether1", ...})
//		// an IPv6 packet walks /ipv6/firewall: a neighbour solicitation
//		ns := rossim.Packet{Chain: "input", InInterface: "ether1",
//			Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1:ff00:1"),
//			Protocol: 58, ICMPType: 135, ConnState: "new"}
//		v6 := state.Evaluate(ns)
//	}
//
// Scripts run as on the router's terminal: r.Import(ctx, script, out), or
// /import file-name= over the API with the file among the router's files
// (Options.FilesDir, PutFile). A container the script starts runs through
// Options.ContainerRunner; internal/simagent runs the real agent there.
//
// cmd/routeros-sim serves the same router from the command line.
//
// # Behaviours and sources
//
//	behaviour                                                         source
//	----------------------------------------------------------------  ------------------------------------------------
//	words: 1-5 byte length prefixes, 0x00 inside a length is data     [C] API-doc; [3P] librouteros test_long_word
//	first length byte >= 0xF8 is a control byte: connection ends      [C] API-doc
//	sentence = words + empty word; empty sentences ignored            [C] API-doc
//	=name=value (value may be empty or hold '='), .tag, ?query        [C] API-doc
//	.tag echoed on every reply sentence (!re !trap !empty !done)      [C] API-doc "Tags"; [3P] socialwifi#102 (!empty)
//	pipelined commands answered in order, each under its own tag      [C] API-doc (concurrent commands)
//	!trap =message= [=category=] always followed by !done             [C] API-doc; go-routeros PR #16
//	!done =ret=*HEX after add, =ret=N after print count-only          [C] REST-doc; librouteros-analysis
//	!empty before !done of an empty print, only for >= 7.18           [C] 7.18 changelog; [3P] pear2/Net_RouterOS#80
//	!fatal + bare word, then close: /quit "session terminated on      [C] cmd-notes; librouteros-analysis
//	  request"; command before login "not logged in"                  [3P] @mhycy/routeros-client
//	/login =name= =password= (6.43+); "invalid user name or           [C] API-doc; [3P] BenMenking/routeros-api#52,
//	  password (6)"; connection stays open after a failure            go-routeros TestLoginIncorrectPost643; [I]
//	legacy login: !done =ret=<challenge>, =response=00<md5 hex>,      [C] librouteros-analysis, go-routeros
//	  failure "cannot log in" (Options.LegacyLogin)                      TestLoginPre643
//	/ip/service api max-sessions (default 20, 1..1000): extra          [C] manual ip/service (default 20); [I] closing
//	  connections accepted then closed
//	/cancel [=tag=]: !trap category 2 "interrupted" on the command,   [C] API-doc; librouteros-analysis
//	  !done of /cancel, then !done of the command
//	listen (and print =follow=, =follow-only=): !re per change,       [C] API-doc, cmd-notes; capture shows .dead=true
//	  =.id= =.dead=true on removal; never ends by itself
//	queries ?k=v ?=k=v ?k ?-k ?<k=v ?>k=v ?#(! & | . digits); stack   [C] API-doc; [3P] librouteros query.py (?=)
//	  of true; absent property compares as ""                          [C] API-doc "?>comment=" example
//	=.proplist= (listed order; bare !re when none present)            [C] API-doc; librouteros-analysis
//	booleans print true/false; input yes/no/true/false                [C] REST-doc
//	ids *HEX, increasing, never reused; bare numbers are no ids       [C] REST-doc; [3P] librouteros#20, mikrotik-mcp#128
//	.id and numbers interchangeable, comma lists                      [C] REST-doc; [3P] terraform
//	filter: one global ordered list; add place-before=*ID inserts     [C] manual print numbering; [3P] terraform,
//	  before it; set rejects it "unknown parameter place-before"        terraform-provider-routeros#223
//	move numbers=*A,*B destination=*D puts them before *D, in the     [3P] terraform resource_move.go, ansible;
//	  order given; without destination: to the end                    [I] for the missing destination
//	set =!prop= unsets; =prop= (empty) clears; unset value-name=      [3P] community.routeros api_modify; [I] unset
//	enable/disable/remove/set on comma lists, all or nothing          [C] REST-doc (lists); [I] atomicity
//	"failure: ports can be specified if proto is                      [3P] danikf/tik4net#52 (real router)
//	  tcp,udp,udp-lite,dccp,sctp" (also for !tcp or no protocol)
//	"unknown parameter <name>" (also read-only bytes, packets,        [3P] terraform #535, #223; [I] read-only
//	  dynamic, invalid)
//	"no such item (4)" for a missing or bare-number id                [3P] tik4net#13 and others (DESIGN.md: prefix)
//	"input does not match any value of <prop>", category 1            [C] API-doc (interface); [3P] protocol, action;
//	  (action, protocol, booleans, connection-state, in-interface,      [I] interface lists and booleans by analogy
//	  in-interface-list and the like)
//	"invalid value for argument <name>" for bad addresses and ports   [3P] reference 2.4
//	"missing value(s) of argument(s) chain" (also list, address)      [3P] console text; API text unknown [I]
//	"failure: no target chain specified" for jump without target      [3P] mikrotik-mcp#137 (live router)
//	jump to a chain without rules: accepted, printed invalid=true,    [3P] mikrotik-mcp#137 ("0 I ... jump-target=
//	  skipped by Evaluate; valid once the chain has a rule               probe-chain"); chains exist by use
//	"failure: tcp-flags works only with tcp", "failure: icmp-options  [3P] CLI simulator following 7.16 captures
//	  can be specified if proto is icmp"
//	unknown path: "no such command or directory (<word>)" category 0  [3P] townet capture; home-assistant/core#68115
//	  then "no such command prefix", then !done
//	address normalisation: host bits cleared, /32 printed bare, a     [C] address-list doc, v2.9 manual;
//	  range that is one prefix stored as the prefix                    [3P] socialwifi/RouterOS-api#62 (/32)
//	address-list: text that is no address kept as a DNS name          [C] address-list doc (not resolved here)
//	address-list duplicate (same list, same normalised address):      [C] REST-doc; per-list uniqueness [I]
//	  "failure: already have such entry"
//	address-list timeout= makes the entry dynamic; creation-time      [C] address-list doc; [3P] format (RouterOS-api#62)
//	  "YYYY-MM-DD HH:MM:SS" (timeouts do not count down or expire)
//	protocol by name or number 0-255; printed by name when RouterOS   [3P] terraform validator (names); printing by
//	  has one, else the number (compare by number)                      name follows exports [I]
//	dynamic dummy rule "special dummy rule to show fasttrack          [C] manual statistics sample; [3P] 7.x routers
//	  counters" at the top while a fasttrack rule exists; cannot be     [3P] 7.24.2 "cannot move builtin"; tik4net
//	  moved/targeted ("cannot move builtin"), removed ("cannot          fake router (remove/change texts)
//	  remove builtin") or changed ("cannot change builtin"); its id is  [3P] reference 8: *D after defconf's *1..*C on a
//	  the next of the filter counter, like any rule                     real hAP (public test code)
//	printed filter row: .id chain action matchers log log-prefix      [I] reference 2.1 (consistent with captures)
//	  bytes packets invalid dynamic disabled [comment]
//	defconf: 11 filter rules, lists WAN (ether1) and LAN (bridge)     [3P] defconf exports, reference 2.5
//	/interface/veth add/set/remove: the veth is also an interface     [C] manual containers/veth; [3P] duplicate name
//	  (for lists and rules); "failure: already have interface with       text: community.routeros fake_api.py
//	  such name"
//	/system/resource, /system/identity, /interface, /interface/list   [I] field names and "7.x (stable)" as 7.x
//	  (builtin all none dynamic static), /interface/list/member         prints them; values are plausible, not real
//	scripts (Import, /import file-name=, the console) are parsed      [3P] reference 8 (public scripts, lab notes)
//	  whole before anything runs; a name the version lacks is a
//	  load-time error and nothing runs:
//	  "expected end of command (line L column C)" at the argument      [3P] 7.21.5 lab note, reference 8
//	  "bad command name X (line L column C)" at a command              [I] the console's wording
//	  neither :do on-error nor an untaken :if protects a name          [3P] reference 8
//	[:parse "..."] parses when it runs; its errors are catchable      [3P] reference 8
//	find where: property names are not checked at load (an unknown    [I] reference 8 lists it as open
//	  one matches nothing); yes/no compare equal to true/false
//	remove/set/start [find ...] finding nothing does nothing          [3P] idiom of published scripts [I]
//	a run-time error (:error, a failed command) stops the script;      [I]
//	  what ran stays done
//	/import over the API: !done, or !trap =message=<the error>         [I] framing undocumented
//	string escapes \" \\ \n \r \t \$ \? \_ \a \b \f \v \XX; a \ at the  [C] manual "Scripting"
//	  end of a line continues it; "$v", "$[cmd]", "$(expr)"
//	array constants {1;"a";{2}} and {k=v;...} (keys not looked up)     [C] manual "Scripting"; [I] no key access
//	functions (:local f do={...}): $1.. positional, named arguments    [C] manual "Scripting"
//	  as variables, no access to the caller's locals, :return
//	version-dependent names (writing one the version lacks is a
//	  load-time error, and "unknown parameter" over the API):
//	  /ip/service address (up to 7.23), available-from (7.24+)         [3P] 7.24 changelog, nasnet-panel PR #794
//	  /container/envs name= (< 7.20), list= (7.20+); /container         [3P] tikoci notes (/console/inspect)
//	    envlist (< 7.20), envlists (7.20+)
//	  /container/mounts name= (7.20), list= (7.21+); /container         [3P] 7.21 changelog (MikroDash docs), Ansible
//	    mounts (7.20), mountlists (7.21+); inline env=, mount=            on CHR 7.21.4, tikoci; [I] no 7.21+ aliases
//	    (7.21+)
//	  /container healthcheck-cmd, healthcheck-interval (7.23+)         [C] manual containers
//	/ip/service lists a dynamic row per API connection (7.19+), named  [3P] terraform-provider-routeros #896 #897
//	  like the service (find where name=api finds two); fields [I]       #769
//	/ip/service api: a client outside address/available-from, or any   [C] manual ip/service
//	  client while disabled, is accepted then closed
//	login needs the user's password, its address= and the api policy;  [3P] BenMenking/routeros-api#52 (text); [I]
//	  every refusal is "invalid user name or password (6)"               same text for every cause (logged apart)
//	a command the group lacks write (changes) or read (prints) for:    [3P] homeassistant-mikrotik_router#235,
//	  "not enough permissions (9)"                                       socialwifi/RouterOS-api#109 (7.19.2)
//	groups read, write, full are builtin; /user password write-only    [C] manual "User"; [I] not printed
//	/container add file= needs the file on /file: status extracting,   [C] manual containers (flags E S R, start once)
//	  then stopped (Options.ExtractTime); start: running; stop:          [I] printed as status= plus running= and
//	  stopped; remove only when stopped (texts [I])                       stopped= booleans
//	the tarball must be a docker-save archive of exactly one image,    [C] manual containers (docker/podman save);
//	  else status error; an image for another architecture stops at     [3P] tangentsoft (multi-platform refused),
//	  once on start ("exec format error" in /log)                          catesin/AmneziaWG-MikroTik#20; [I] texts
//	a started container runs through Options.ContainerRunner (rossim   simulator design: container.go documents the
//	  runs nothing itself); it reaches the API at its gateway:8728,      address mapping
//	  served by a loopback listener whose sessions come from the veth
//	a container's API connection crosses the input chain from its      [3P] tikoci SKILL.md (reference 4); [I] a drop
//	  veth (defconf drops it unless the veth is in LAN); dropped:         closes at once instead of timing out
//	  closed, with a /log line
//	a container does not start without DNS (/ip/dns servers or         [C] manual containers; text [I]
//	  dynamic-servers, or its dns=)
//	/system/device-mode container (Options.ContainersDisabled);        [C] manual device-mode; [I] get
//	  update only records the request (a button press applies it)
//	/ip/dns dynamic-servers set, as learnt from the WAN's DHCP         [I]
//	/file lists Options.FilesDir (types script, tar file, directory)   [I] type names
//	/log: time topics message; a container's output (logging=yes) is   [C] manual containers (logging=yes);
//	  topics container,info                                               [I] topic names
//	/ipv6/firewall/filter and /ipv6/firewall/address-list: verbs,      [C] manual cli-reference ipv6/firewall (menus,
//	  ids, place-before, move and error texts of the IPv4 menus; own      properties as IPv4); [I] texts and id spaces
//	  id spaces and list names (office may exist in both tables)          by analogy with the IPv4 menus
//	IPv6 filter properties: the IPv4 set without ttl, ipv4-options,     [C] manual (menu); [3P] defconf hop-limit=;
//	  fragment, hotspot, p2p, layer7-protocol, tls-host, psd; with         [I] the exact list
//	  hop-limit and headers ("unknown parameter ttl")
//	IPv6 actions: no tarpit ("input does not match any value of         [C] manual cli-reference ipv6/firewall/filter
//	  action"); fasttrack-connection only from 7.18                       (action enum); [3P] 7.18 changelog "ipv6 -
//	                                                                      added FastTrack support" (community.routeros
//	                                                                      #380), terraform-provider-routeros #711
//	IPv6 dummy rule while an IPv6 fasttrack rule exists (7.18+), as     [I] by analogy with IPv4
//	  in IPv4, in the IPv6 table's id space
//	IPv6 reject-with: icmp-no-route icmp-admin-prohibited               [C] manual; [3P] terraform-provider-routeros
//	  icmp-not-neighbour icmp-address-unreachable icmp-port-unreachable   #810 (real router's REST: "input does not
//	  tcp-reset icmp-err-src-routing-header icmp-headers-too-long         match any value of reject-with")
//	IPv6 filter errors "no such item (4)", "failure: ports can be       [3P] jeff-nasseri/mikrotik-mcp#139 (live
//	  specified if proto is tcp,udp,..." as in IPv4                       7.21.5, /ipv6 firewall filter)
//	IPv6 addresses stored canonical (lower case, compressed, RFC        [3P] exports print ::1/128 for defconf's ::1
//	  5952 as netip prints), host bits cleared, a single address as       and ::ffff:0.0.0.0/96 for ::ffff:0:0/96;
//	  /128; no ranges, no zones                                           [I] host bits (reference 9: check), ranges
//	an IPv4 address in an IPv6 menu (and an IPv6 one in an IPv4 menu):  [I] text as other bad values; address-list
//	  "invalid value for argument <name>", also in address-lists          refusing instead of keeping a DNS name [I]
//	  (and any text with a colon that is no address of the list's
//	  family: no DNS name has one)
//	icmp-options type[:code], each N or N-M in 0..255 (no names);       [3P] icmp-options=154:4-5 in 7.x exports;
//	  IPv6: "failure: icmp-options can be specified if proto is           [I] the icmpv6 text, names not modelled
//	  icmpv6"; bad value: "invalid value for argument icmp-options"
//	IPv6 defconf: bad_ipv6 (9 prefixes), input (10 rules: established,  [3P] /system default-configuration print
//	  invalid, ICMPv6, UDP traceroute, DHCPv6-client udp 546 from         dumps of 7.x (public repos, found by the
//	  fe80::/10, IKE, AH, ESP, ipsec policy, drop !LAN), forward (12:      rule comments); mepley.net "MikroTik
//	  established, invalid, bad_ipv6 src/dst, icmpv6 hop-limit=1,         RouterOS IPv6 firewall rules" (7.14 change);
//	  ICMPv6, HIP 139, IKE, AH, ESP, ipsec policy, drop !LAN);            reference section 9
//	  traceroute port= before 7.14, dst-port= from 7.14
//	Evaluate: the packet's family (Src, else Dst) picks the table;      [C] separate /ip and /ipv6 firewalls;
//	  icmp-options matches Packet.ICMPType/ICMPCode for icmp/icmpv6      RFC 4443/4861 for the type numbers
//	Evaluate: rules in order, disabled/invalid skipped, accept drop   [C] Filter doc (chains, jump/return, implicit
//	  reject decide (tarpit drops), jump/return, user chain falls       accept of built-in chains); [I] fasttrack is
//	  through to the caller, built-in chain ends in accept;             treated as non-terminating (defconf accepts
//	  passthrough/log/fasttrack/add-to-list continue                    the same states right after it)
//
// # What Evaluate does not model
//
// Probe packets are never NATed (connection-nat-state=dstnat never matches,
// !dstnat always does) and never IPsec (ipsec-policy=...,none matches,
// ...,ipsec does not). A rule with a matcher the evaluator does not model
// (limit, tcp-flags, connection-mark, hop-limit, headers, ...) never
// matches, and the trace says so: defconf's IPv6 forward rule "rfc4890 drop
// hop-limit=1" never drops a probe. Address-list entries stored as DNS
// names match nothing. A probe's ICMP type and code default to 0.
//
// # Faults and load
//
// Options.Latency / SetLatency delays every reply by a fixed time without
// serialising pipelined commands; Options.WriteServiceTime /
// SetWriteServiceTime makes each write take that long, with writes
// serialised router-wide (RouterOS's configuration database); DropAfter
// closes a connection abruptly after n more commands; InjectTrap answers
// chosen commands with a trap and no effect. Exec (the local console) is
// exempt from faults and from Stats.
//
// # History
//
// History holds the initial state and one state per successful write. Rows
// are immutable and shared between states, and each write records only the
// rows it changed, so 10,000 writes cost a few hundred kilobytes; History()
// materialises the states on demand (O(states x rows): call it on small
// scenarios, or set Options.HistoryLimit). HistoryLimit < 0 records nothing.
package rossim
