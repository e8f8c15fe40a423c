// yamux-peer: a hashicorp/yamux peer for warren's interop tests
// (test/relay/yamux-interop.test.ts builds and drives it).
//
// Built offline against Debian's golang-github-hashicorp-yamux-dev (go.mod's
// replace points at /usr/share/gocode). Everything listens on or dials 127.0.0.1.
//
//	yamux-peer -listen              serve yamux sessions (server side); prints "listening 127.0.0.1:PORT"
//	yamux-peer -connect HOST:PORT   one yamux session (client side); prints "connected"
//	  -window BYTES   MaxStreamWindowSize (default yamux's 256 KiB)
//	  -backlog N      AcceptBacklog (default 256)
//
// The process exits when its standard input closes, so it never outlives the test.
//
// Every stream the other side opens starts with one command line; the peer
// answers on the same stream:
//
//	echo               copy everything back until EOF, then close
//	sink               read until EOF, answer "<bytes> <sha256 hex>\n", close
//	source N           send N pseudo-random bytes and their 32-byte SHA-256, close
//	ping               ping the other side, answer "rtt <ns>\n"
//	stats              answer "resets=<streams that saw a RST>\n"
//	goaway             send GoAway(normal), answer "ok\n"
//	try-open           try to open a stream, answer "opened\n" or "refused <error>\n"
//	hold               stop accepting streams, answer "held\n"; on the line
//	                   "release" accept again and answer "released\n"
//	open-echo K SIZE   open K streams at once; on each send "echo\n" and SIZE
//	                   random bytes, expect them back, close; answer "ok\n" or "fail <why>\n"
//	open-sink N        open a stream, send "sink N\n" and N random bytes, expect
//	                   "<N> <sha256 hex>\n" then EOF; answer "ok\n" or "fail <why>\n"
//	open-halfclose N   open a stream, send "source N\n", read N bytes + SHA-256 until
//	                   EOF (the other side half-closed), then still send "thanks\n";
//	                   answer "ok\n" or "fail <why>\n"
//	open-many K        open K streams one after another, each "echo\n" + one byte,
//	                   keep them all open until each echoed or was reset; answer
//	                   "ok=<echoed> reset=<reset>\n"
//
// This yamux version (2019) answers Read with EOF once the stream was closed
// locally, so a command never reads after its own Close.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

type peer struct {
	session *yamux.Session
	resets  *int64
	gate    *acceptGate
}

// acceptGate lets the "hold" command stop the accept loop, so the backlog fills
// and yamux refuses further streams with RST.
type acceptGate struct {
	mu   sync.Mutex
	open *sync.Cond
	held bool
}

func newAcceptGate() *acceptGate {
	g := &acceptGate{}
	g.open = sync.NewCond(&g.mu)
	return g
}

func (g *acceptGate) set(held bool) {
	g.mu.Lock()
	g.held = held
	g.mu.Unlock()
	g.open.Broadcast()
}

func (g *acceptGate) wait() {
	g.mu.Lock()
	for g.held {
		g.open.Wait()
	}
	g.mu.Unlock()
}

func main() {
	listen := flag.Bool("listen", false, "serve yamux sessions on 127.0.0.1:0")
	connect := flag.String("connect", "", "dial HOST:PORT and run one client session")
	window := flag.Uint("window", 256*1024, "MaxStreamWindowSize in bytes")
	backlog := flag.Int("backlog", 256, "AcceptBacklog")
	flag.Parse()

	config := yamux.DefaultConfig()
	config.MaxStreamWindowSize = uint32(*window)
	config.AcceptBacklog = *backlog
	config.EnableKeepAlive = false
	config.LogOutput = io.Discard

	// Exit with the parent: the test keeps our stdin open while it needs us.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()

	var resets int64
	switch {
	case *listen:
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("listen: %v", err)
		}
		fmt.Printf("listening %s\n", listener.Addr())
		for {
			conn, err := listener.Accept()
			if err != nil {
				fail("accept: %v", err)
			}
			session, err := yamux.Server(conn, config)
			if err != nil {
				fail("yamux server: %v", err)
			}
			go (&peer{session: session, resets: &resets, gate: newAcceptGate()}).serve()
		}
	case *connect != "":
		conn, err := net.Dial("tcp", *connect)
		if err != nil {
			fail("dial: %v", err)
		}
		session, err := yamux.Client(conn, config)
		if err != nil {
			fail("yamux client: %v", err)
		}
		fmt.Println("connected")
		(&peer{session: session, resets: &resets, gate: newAcceptGate()}).serve()
		fmt.Println("session closed")
		// Stay until the test closes stdin, so it can still read what we printed.
		select {}
	default:
		fail("give -listen or -connect HOST:PORT")
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "yamux-peer: "+format+"\n", args...)
	os.Exit(1)
}

func (p *peer) serve() {
	for {
		stream, err := p.session.AcceptStream()
		if err != nil {
			return
		}
		p.gate.wait()
		go p.handle(stream)
	}
}

func (p *peer) countReset(err error) {
	if errors.Is(err, yamux.ErrConnectionReset) {
		atomic.AddInt64(p.resets, 1)
	}
}

func (p *peer) handle(stream *yamux.Stream) {
	defer stream.Close()
	in := bufio.NewReader(stream)
	line, err := in.ReadString('\n')
	if err != nil {
		p.countReset(err)
		return
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	reply := func(format string, args ...interface{}) {
		_, _ = fmt.Fprintf(stream, format, args...)
	}
	switch fields[0] {
	case "echo":
		if _, err := io.Copy(stream, in); err != nil {
			p.countReset(err)
		}
	case "sink":
		hash := sha256.New()
		n, err := io.Copy(hash, in)
		if err != nil {
			p.countReset(err)
			return
		}
		reply("%d %s\n", n, hex.EncodeToString(hash.Sum(nil)))
	case "source":
		size, _ := strconv.Atoi(argument(fields, 1))
		data := randomBytes(size, int64(size))
		sum := sha256.Sum256(data)
		if _, err := stream.Write(data); err != nil {
			p.countReset(err)
			return
		}
		_, _ = stream.Write(sum[:])
	case "ping":
		rtt, err := p.session.Ping()
		if err != nil {
			reply("fail %v\n", err)
			return
		}
		reply("rtt %d\n", rtt.Nanoseconds())
	case "stats":
		reply("resets=%d\n", atomic.LoadInt64(p.resets))
	case "goaway":
		if err := p.session.GoAway(); err != nil {
			reply("fail %v\n", err)
			return
		}
		reply("ok\n")
	case "try-open":
		opened, err := p.session.OpenStream()
		if err != nil {
			reply("refused %v\n", err)
			return
		}
		opened.Close()
		reply("opened\n")
	case "hold":
		p.gate.set(true)
		reply("held\n")
		next, _ := in.ReadString('\n')
		p.gate.set(false)
		if strings.TrimSpace(next) == "release" {
			reply("released\n")
		}
	case "open-echo":
		count, _ := strconv.Atoi(argument(fields, 1))
		size, _ := strconv.Atoi(argument(fields, 2))
		reply("%s\n", p.openEcho(count, size))
	case "open-sink":
		size, _ := strconv.Atoi(argument(fields, 1))
		reply("%s\n", p.openSink(size))
	case "open-halfclose":
		size, _ := strconv.Atoi(argument(fields, 1))
		reply("%s\n", p.openHalfClose(size))
	case "open-many":
		count, _ := strconv.Atoi(argument(fields, 1))
		reply("%s\n", p.openMany(count))
	default:
		reply("fail unknown command %q\n", fields[0])
	}
}

func argument(fields []string, index int) string {
	if index < len(fields) {
		return fields[index]
	}
	return ""
}

func randomBytes(size int, seed int64) []byte {
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	return data
}

func (p *peer) openEcho(count, size int) string {
	errs := make(chan error, count)
	for i := 0; i < count; i++ {
		go func(i int) {
			errs <- p.echoOnce(randomBytes(size, int64(i)+1))
		}(i)
	}
	for i := 0; i < count; i++ {
		if err := <-errs; err != nil {
			return "fail " + err.Error()
		}
	}
	return "ok"
}

func (p *peer) echoOnce(data []byte) error {
	stream, err := p.session.OpenStream()
	if err != nil {
		return err
	}
	defer stream.Close()
	writeErr := make(chan error, 1)
	go func() {
		if _, err := stream.Write([]byte("echo\n")); err != nil {
			writeErr <- err
			return
		}
		_, err := stream.Write(data)
		writeErr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(stream, got); err != nil {
		return fmt.Errorf("stream %d: reading the echo: %v", stream.StreamID(), err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("stream %d: writing: %v", stream.StreamID(), err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("stream %d: the echo differs", stream.StreamID())
	}
	return nil
}

func (p *peer) openSink(size int) string {
	stream, err := p.session.OpenStream()
	if err != nil {
		return "fail " + err.Error()
	}
	defer stream.Close()
	data := randomBytes(size, 7)
	sum := sha256.Sum256(data)
	if _, err := fmt.Fprintf(stream, "sink %d\n", size); err != nil {
		return "fail " + err.Error()
	}
	if _, err := stream.Write(data); err != nil {
		return "fail writing: " + err.Error()
	}
	answer, err := io.ReadAll(stream)
	if err != nil {
		return "fail reading the answer: " + err.Error()
	}
	want := fmt.Sprintf("%d %s\n", size, hex.EncodeToString(sum[:]))
	if string(answer) != want {
		return fmt.Sprintf("fail answer %q, want %q", answer, want)
	}
	return "ok"
}

func (p *peer) openHalfClose(size int) string {
	stream, err := p.session.OpenStream()
	if err != nil {
		return "fail " + err.Error()
	}
	defer stream.Close()
	if _, err := fmt.Fprintf(stream, "source %d\n", size); err != nil {
		return "fail " + err.Error()
	}
	received, err := io.ReadAll(stream) // ends at the other side's FIN
	if err != nil {
		return "fail reading: " + err.Error()
	}
	if len(received) != size+sha256.Size {
		return fmt.Sprintf("fail got %d bytes, want %d", len(received), size+sha256.Size)
	}
	sum := sha256.Sum256(received[:size])
	if !bytes.Equal(sum[:], received[size:]) {
		return "fail checksum mismatch"
	}
	// Our side is still open for writing after the other side's FIN.
	if _, err := stream.Write([]byte("thanks\n")); err != nil {
		return "fail writing after the peer's FIN: " + err.Error()
	}
	return "ok"
}

func (p *peer) openMany(count int) string {
	var streams []*yamux.Stream
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	echoed, reset := 0, 0
	for i := 0; i < count; i++ {
		stream, err := p.session.OpenStream()
		if err != nil {
			return "fail " + err.Error()
		}
		streams = append(streams, stream)
		stream.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := stream.Write([]byte("echo\nx")); err != nil {
			if errors.Is(err, yamux.ErrConnectionReset) {
				reset++
				continue
			}
			return "fail writing: " + err.Error()
		}
		one := make([]byte, 1)
		_, err = io.ReadFull(stream, one)
		switch {
		case err == nil:
			echoed++
		case errors.Is(err, yamux.ErrConnectionReset):
			reset++
		default:
			return "fail reading: " + err.Error()
		}
	}
	return fmt.Sprintf("ok=%d reset=%d", echoed, reset)
}
