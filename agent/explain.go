package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rampart-fw/rampart/agent/mqtt"
	"github.com/rampart-fw/rampart/agent/routeros"
	"github.com/rampart-fw/rampart/protocol"
)

// The agent is often debugged only through its container's log, so every
// failure it classifies is turned here into one sentence that names the
// cause and the setting to check. Classification is by type (errors.Is and
// errors.As on the adapters' typed errors), never by message text.

// wanMissingError: the interface list the jumps need does not exist.
type wanMissingError struct{ list string }

func (e *wanMissingError) Error() string {
	return fmt.Sprintf("interface list %q does not exist", e.list)
}

// mismatchError: the read-back after an apply still needs writes.
type mismatchError struct {
	writes int
	first  string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("the router does not match the policy after applying it: %d writes still needed (first: %s); someone may be editing the firewall at the same time", e.writes, e.first)
}

// transient reports whether an apply failed on the connection rather than
// on a refusal: another attempt on a new session may succeed, so it is
// retried within the apply (applyRetrying) before anything is reported.
// A read-back that does not match counts too: someone edited the firewall
// meanwhile, and a fresh read plans the difference.
func transient(err error) bool {
	var ce *routeros.ConnError
	var mm *mismatchError
	return errors.As(err, &ce) || errors.As(err, &mm)
}

// explain turns an apply error into a sentence a person can act on.
func (a *Agent) explain(err error) string {
	var (
		wan   *wanMissingError
		login *routeros.LoginError
		conn  *routeros.ConnError
		trap  *routeros.Trap
	)
	if errors.As(err, &trap) {
		switch trap.Property() {
		case "in-interface-list", "out-interface-list":
			// Only the jumps name an interface list: the WAN list went
			// away between checkWAN and the write.
			wan = &wanMissingError{list: a.cfg.WANList}
		}
	}
	switch {
	case wan != nil, errors.As(err, &wan):
		return fmt.Sprintf("interface list %q does not exist on the router: create it (/interface/list/add name=%s) and add the Internet-facing interfaces, or set %s to the list that holds them", a.cfg.WANList, a.cfg.WANList, protocol.EnvWANList)
	case errors.As(err, &login):
		return fmt.Sprintf("RouterOS at %s refused the login of user %q (%s): check %s and %s", login.Addr, login.User, login.Message, protocol.EnvRouterOSUser, protocol.EnvRouterOSPassword)
	case errors.Is(err, routeros.ErrPermission):
		return fmt.Sprintf("RouterOS user %q lacks permissions (%v): give its group the api, read and write policies (/user/group/set [find name=<group>] policy=api,read,write), or set %s to a user that has them", a.cfg.RouterOSUser, err, protocol.EnvRouterOSUser)
	case errors.As(err, &conn) && conn.Dialing():
		return fmt.Sprintf("cannot reach the RouterOS API at %s (%v): check %s, that the api service (api-ssl with %s) is enabled and that its available-from/address allows the container", conn.Addr, err, protocol.EnvRouterOSAddr, protocol.EnvRouterOSTLS)
	case errors.As(err, &conn):
		return fmt.Sprintf("lost the RouterOS API connection to %s (%v)", conn.Addr, err)
	}
	return err.Error()
}

// explainBroker turns a failed broker connection into a sentence naming the
// setting to check.
func (a *Agent) explainBroker(err *mqtt.ConnectError) string {
	switch err.Cause() {
	case mqtt.CauseCredentials:
		return fmt.Sprintf("the MQTT broker refused the site's credentials (user %q): check %s (and %s, %s) against what `rampart-controlplane enroll` printed for this site", a.cfg.MQTTUser(), protocol.EnvSiteSecret, protocol.EnvOrgID, protocol.EnvSiteID)
	case mqtt.CauseUntrusted:
		return fmt.Sprintf("the MQTT broker's TLS certificate is not trusted (not signed by a known CA, or not for the host in %s): set %s to the PEM file of the CA that signed it, or fix the host name", protocol.EnvMQTTURL, protocol.EnvMQTTCA)
	case mqtt.CauseTLS:
		return fmt.Sprintf("the TLS handshake with the MQTT broker failed: check that the port in %s serves TLS (ssl://) or use tcp:// for a plain listener", protocol.EnvMQTTURL)
	case mqtt.CauseRefused:
		return fmt.Sprintf("the MQTT broker refused the connection: check that %s points at the control plane's broker", protocol.EnvMQTTURL)
	case mqtt.CauseUnreachable:
		return fmt.Sprintf("cannot reach the MQTT broker: check %s, that the broker is running, and that the router can reach it (DNS, routes, firewall)", protocol.EnvMQTTURL)
	}
	return fmt.Sprintf("cannot connect to the MQTT broker: check %s", protocol.EnvMQTTURL)
}

// complaint logs one explanatory line per cause: at once when the cause is
// new, then at most once per interval while it persists, with the number
// of failures in between, so a retry loop explains itself without
// flooding the container log.
type complaint struct {
	log      *slog.Logger
	interval time.Duration
	cause    string
	last     time.Time
	repeats  int
}

// say logs msg (err is the detail) unless the same cause was logged less
// than interval ago.
func (c *complaint) say(msg string, err error) {
	if msg == c.cause && time.Since(c.last) < c.interval {
		c.repeats++
		return
	}
	c.log.Error(msg, "err", err, "failures_since_last_line", c.repeats)
	c.cause, c.last, c.repeats = msg, time.Now(), 0
}

// clear forgets the cause: the next failure is logged at once.
func (c *complaint) clear() { c.cause = "" }
