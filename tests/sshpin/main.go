// sshpin dials an SSH server the way pulumi-command v1.2.1 does when a connection has `hostKey`
// (provider/pkg/provider/remote/connection.go, SSHConfig): the pinned key is parsed with
// ssh.ParseAuthorizedKey, checked with ssh.FixedHostKey, and offered as the only host key
// algorithm. It then runs one command with stdin, like a step. Used by tests/test_hostkey.py only.
//
//	sshpin -addr 127.0.0.1:2222 -user root -key client_key -host-key-file pinned.pub -- command
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

func main() {
	addr := flag.String("addr", "", "host:port")
	user := flag.String("user", "root", "login user")
	keyFile := flag.String("key", "", "client private key (OpenSSH)")
	hostKeyFile := flag.String("host-key-file", "", "the pinned host key, authorized_keys format")
	flag.Parse()

	pinned, err := os.ReadFile(*hostKeyFile)
	check("read host key", err)
	publicKey, _, _, _, err := ssh.ParseAuthorizedKey(pinned)
	check("failed to parse host key", err)
	private, err := os.ReadFile(*keyFile)
	check("read client key", err)
	signer, err := ssh.ParsePrivateKey(private)
	check("parse client key", err)

	config := &ssh.ClientConfig{
		User:              *user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(publicKey),
		HostKeyAlgorithms: []string{publicKey.Type()},
		Timeout:           10 * time.Second,
	}
	client, err := ssh.Dial("tcp", *addr, config)
	check("dial", err)
	defer client.Close()
	session, err := client.NewSession()
	check("session", err)
	session.Stdin = os.Stdin
	session.Stdout = os.Stdout
	session.Stderr = os.Stderr
	check("run", session.Run(strings.Join(flag.Args(), " ")))
}

func check(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "sshpin: %s: %v\n", what, err)
		os.Exit(255)
	}
}
