# Sourced by the project's scripts (tests/run.sh, benches/run.sh,
# examples/cluster/run.sh): `need WHO PACKAGE[:COMMAND]...` installs the
# Debian packages whose command is missing (with apt-get, when run as
# root), or prints the command to run and fails. COMMAND defaults to the
# package's name; one in /usr/sbin counts as present (nginx for a user).
need() {
    local who=$1 spec package command
    shift
    local missing=()
    for spec in "$@"; do
        package=${spec%%:*}
        command=${spec#*:}
        command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "$who: installing ${missing[*]} with apt-get" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "$who: needs ${missing[*]}" >&2
        echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
        return 1
    fi
}
