# The environment pki-tomcatd@.service gives Tomcat, for the Dogtag images (ca, monolithic).
# Sourced with the instance name: `. /usr/local/lib/ipabuild/pki-tomcat-env.sh pki-tomcat`.
set -a
. /usr/share/pki/etc/tomcat.conf
CATALINA_HOME=/usr/share/tomcat9
NAME=$1
if [ -f "/etc/default/$1" ]; then . "/etc/default/$1"; fi
. /usr/share/pki/etc/pki.conf
. /etc/pki/pki.conf
CATALINA_OPTS="${CATALINA_OPTS:-} ${CA_JAVA_OPTS:-}"
set +a
