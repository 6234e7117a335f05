// Holds the start of the CA webapp until its database (o=ipaca, in the ldap service)
// answers LDAP. Dogtag 10.10's engine checks its database once, early, and gives up for
// good when it does not answer; so the container used to wait for ldap before starting
// Tomcat at all. Waiting here, in the ca context's start, lets the JVM's and Tomcat's own
// start (about a second on this project's 2-core machine) overlap ldap's.
//
// A Tomcat listener is Java by necessity. It is compiled at build time (services/ca/
// service.yaml) with the JRE's own compiler module, and named in the ca context by the
// entrypoint (services/ca/entrypoint.sh). It reads the address the entrypoint uses,
// CA_LDAP_HOST and CA_LDAP_PORT, and waits as long as it takes, as the entrypoint did.
package org.ipabuild.tomcat;

import java.util.Hashtable;
import javax.naming.Context;
import javax.naming.NamingException;
import javax.naming.directory.DirContext;
import javax.naming.directory.InitialDirContext;
import org.apache.catalina.Lifecycle;
import org.apache.catalina.LifecycleEvent;
import org.apache.catalina.LifecycleListener;

public class WaitForDatabase implements LifecycleListener {
    private static final long POLL_MILLIS = 250;
    private static final int LOG_EVERY = 120; // polls: every 30 seconds

    @Override
    public void lifecycleEvent(LifecycleEvent event) {
        if (!Lifecycle.CONFIGURE_START_EVENT.equals(event.getType())) {
            return;
        }
        String url = "ldap://" + setting("CA_LDAP_HOST", "ldap") + ":"
                + setting("CA_LDAP_PORT", "3389");
        long started = System.nanoTime();
        for (int polls = 0; !answers(url); polls++) {
            if (polls % LOG_EVERY == 0) {
                log("waiting for " + url + " to answer LDAP (the CA's database o=ipaca)");
            }
            try {
                Thread.sleep(POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        log(url + " answers LDAP after " + (System.nanoTime() - started) / 1_000_000
                + " ms; starting Dogtag");
    }

    /** An anonymous read of the root entry: a real LDAP answer, not only an open port. */
    static boolean answers(String url) {
        Hashtable<String, String> env = new Hashtable<>();
        env.put(Context.INITIAL_CONTEXT_FACTORY, "com.sun.jndi.ldap.LdapCtxFactory");
        env.put(Context.PROVIDER_URL, url);
        env.put("com.sun.jndi.ldap.connect.timeout", "2000");
        env.put("com.sun.jndi.ldap.read.timeout", "5000");
        try {
            DirContext directory = new InitialDirContext(env);
            try {
                directory.getAttributes("", new String[] {"namingContexts"});
            } finally {
                directory.close();
            }
            return true;
        } catch (NamingException e) {
            return false;
        }
    }

    private static String setting(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static void log(String message) {
        System.err.println(java.time.Instant.now().toString().replaceFirst("\\.\\d+Z$", "Z")
                + " ipabuild[ca]: " + message);
    }
}
