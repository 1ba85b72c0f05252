#!/usr/bin/env bash
# Copies Apache Kafka's broker jars (org.apache.kafka:kafka_2.13 and everything it
# depends on at run time) from Maven Central into a cache outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/kafka/<KAFKA_VERSION>/lib/
#
# The tests start a single KRaft broker from them (test/helpers/kafka-broker.ts):
# `java -cp 'lib/*' kafka.Kafka server.properties` after `kafka.tools.StorageTool format`.
# Idempotent: a complete lib/ (marked by .complete) is left alone.
#
#   scripts/kafka-jars.sh                  copy (or check) the jars
#   scripts/kafka-jars.sh --print-lib-dir  print the jar directory and exit
#
# The pom is generated in the cache, never in the repository.
set -euo pipefail

KAFKA_VERSION="4.4.0"

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
kafka_dir="$cache_root/kafka/$KAFKA_VERSION"
lib_dir="$kafka_dir/lib"

if [ "${1:-}" = "--print-lib-dir" ]; then
  printf '%s\n' "$lib_dir"
  exit 0
fi

say() { printf 'kafka-jars: %s\n' "$*" >&2; }
die() { printf 'kafka-jars: error: %s\n' "$*" >&2; exit 1; }

[ -f "$lib_dir/.complete" ] && exit 0

command -v mvn >/dev/null 2>&1 || die "mvn not found (install Debian's maven)"
command -v java >/dev/null 2>&1 || die "java not found (install a JDK 17 or later)"

mkdir -p "$kafka_dir"
exec 9>"$kafka_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another copy into $kafka_dir is running; waiting for it"; flock 9; }
  [ -f "$lib_dir/.complete" ] && exit 0
fi

cat > "$kafka_dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>meshd.local</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM

say "copying org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies into $lib_dir"
rm -rf "$lib_dir"
mvn -q -B -f "$kafka_dir/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$lib_dir" \
  || die "step 'mvn dependency:copy-dependencies' failed"
ls "$lib_dir"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "kafka_2.13-$KAFKA_VERSION.jar missing after the copy"
touch "$lib_dir/.complete"
