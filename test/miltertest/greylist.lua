-- miltertest script: a new triplet is deferred with 451 4.7.1, and the same
-- triplet passes, with an X-Greylist header, once the delay is over.
--
-- Run against a greymilter started with --delay DELAY:
--   miltertest -D socket=inet:PORT@127.0.0.1 -D delay=3 -s greylist.lua
-- The client address (from the documentation range 192.0.2.0/24) must not be
-- in greymilter's trusted networks.

if socket == nil then
	error("define the milter socket: -D socket=inet:PORT@HOST")
end
local delay = tonumber(delay or "3")

local client_addr = "192.0.2.77"
local client_name = "mail.client.example"
local sender = "<sender@client.example>"
local recipient = "<rcpt@test.example>"

-- fail reports on standard output (miltertest does not print the message of
-- error()) and stops the script with a failure status.
local function fail(msg)
	mt.echo("FAIL: " .. msg)
	error(msg)
end

local function check(what, err)
	if err ~= nil then
		fail(what .. " failed: " .. err)
	end
end

local function expect(conn, what, want, wantname)
	local got = mt.getreply(conn)
	if got ~= want then
		fail(string.format("%s: reply %q, want %s", what, string.char(got), wantname))
	end
end

-- envelope opens a connection and sends the connection, HELO, MAIL and RCPT
-- stages, expecting that every stage but RCPT continues. It returns the
-- connection with the RCPT reply pending in mt.getreply.
local function envelope()
	local conn = mt.connect(socket, 20, 0.25)
	if conn == nil then
		fail("cannot connect to " .. socket)
	end
	check("conninfo", mt.conninfo(conn, client_name, client_addr))
	expect(conn, "connect", SMFIR_CONTINUE, "SMFIR_CONTINUE")
	check("helo", mt.helo(conn, client_name))
	expect(conn, "helo", SMFIR_CONTINUE, "SMFIR_CONTINUE")
	check("mailfrom", mt.mailfrom(conn, sender))
	expect(conn, "mail", SMFIR_CONTINUE, "SMFIR_CONTINUE")
	check("rcptto", mt.rcptto(conn, recipient))
	return conn
end

-- First attempt: deferred at RCPT with a reply code.
local conn = envelope()
expect(conn, "first rcpt", SMFIR_REPLYCODE, "SMFIR_REPLYCODE (451 4.7.1)")
mt.echo("first attempt: deferred")
mt.disconnect(conn)

-- Retry after the delay: RCPT continues and the message gets X-Greylist.
mt.sleep(delay + 1)
conn = envelope()
expect(conn, "retry rcpt", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("eom", mt.eom(conn))
local eom = mt.getreply(conn)
if eom ~= SMFIR_CONTINUE and eom ~= SMFIR_ACCEPT then
	fail(string.format("eom: reply %q, want SMFIR_CONTINUE or SMFIR_ACCEPT", string.char(eom)))
end
if not (mt.eom_check(conn, MT_HDRADD, "X-Greylist") or mt.eom_check(conn, MT_HDRINSERT, "X-Greylist")) then
	fail("retry: no X-Greylist header added")
end
local header = mt.getheader(conn, "X-Greylist", 0)
if header == nil or not string.find(header, "^delayed %d+ seconds by greymilter at ") then
	fail("retry: X-Greylist is " .. tostring(header))
end
mt.echo("retry after the delay: passed, X-Greylist: " .. header)
mt.disconnect(conn)
