// Broadcast hub on gorilla/websocket, after gorilla's own chat example: one hub
// goroutine owns the subscriber sets, each client has a bounded send queue and
// read/write pumps with deadlines, and a client whose queue is full is dropped.
//
//	WS   /ws?channel=C         subscribe to C; each text frame is one published body
//	POST /publish?channel=C    body is sent verbatim to every subscriber of C
//	GET  /health               200
//
// Built with GO111MODULE=off against Debian's golang-github-gorilla-websocket-dev.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 512
	sendQueue      = 256
)

type client struct {
	hub     *hub
	conn    *websocket.Conn
	channel string
	send    chan *websocket.PreparedMessage
}

type publication struct {
	channel string
	msg     *websocket.PreparedMessage // framed once, written to every subscriber
}

type hub struct {
	channels   map[string]map[*client]bool
	register   chan *client
	unregister chan *client
	broadcast  chan publication
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			subs := h.channels[c.channel]
			if subs == nil {
				subs = make(map[*client]bool)
				h.channels[c.channel] = subs
			}
			subs[c] = true
		case c := <-h.unregister:
			if subs := h.channels[c.channel]; subs[c] {
				delete(subs, c)
				close(c.send)
				if len(subs) == 0 {
					delete(h.channels, c.channel)
				}
			}
		case p := <-h.broadcast:
			subs := h.channels[p.channel]
			for c := range subs {
				select {
				case c.send <- p.msg:
				default: // slow client: drop it
					delete(subs, c)
					close(c.send)
				}
			}
		}
	}
}

func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { c.conn.SetReadDeadline(time.Now().Add(pongWait)); return nil })
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WritePreparedMessage(msg); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(r *http.Request) bool { return true },
}

func main() {
	port := "8080"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	h := &hub{
		channels:   make(map[string]map[*client]bool),
		register:   make(chan *client),
		unregister: make(chan *client),
		broadcast:  make(chan publication),
	}
	go h.run()

	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.broadcast <- publication{channel: r.URL.Query().Get("channel"), msg: msg}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{hub: h, conn: conn, channel: r.URL.Query().Get("channel"), send: make(chan *websocket.PreparedMessage, sendQueue)}
		h.register <- c
		go c.writePump()
		go c.readPump()
	})
	log.Printf("go-gorilla listening on 127.0.0.1:%s", port)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
