-- miltertest script: Sendmail's {client_resolve} macro. Sendmail hands a
-- milter the client's PTR name whether or not it forward-confirms, and says
-- in {client_resolve} whether it did (OK) or not (FAIL, FORGED, TEMP).
-- The script connects as Sendmail would, with the given macro, and checks
-- greymilter's answer at RCPT.
--
--   miltertest -D socket=inet:PORT@127.0.0.1 -D client_addr=192.0.2.25 \
--     -D client_name=mail-x.google.com -D resolve=FORGED \
--     -D expect=reply -D rcpt=rcpt@test.example -s client_resolve.lua
--
-- resolve "-" sends no {client_resolve}; expect is "continue" (the recipient
-- passes) or "reply" (a reply code: greylisted).

for _, v in ipairs({"socket", "client_addr", "client_name", "resolve", "expect", "rcpt"}) do
	if _G[v] == nil then
		error("define " .. v .. " with -D " .. v .. "=...")
	end
end

local function fail(msg)
	mt.echo("FAIL: " .. msg)
	error(msg)
end

local function check(what, err)
	if err ~= nil then
		fail(what .. " failed: " .. err)
	end
end

local function expect_reply(conn, what, want, wantname)
	local got = mt.getreply(conn)
	if got ~= want then
		fail(string.format("%s: reply %q, want %s", what, string.char(got), wantname))
	end
end

local conn = mt.connect(socket, 20, 0.25)
if conn == nil then
	fail("cannot connect to " .. socket)
end
-- Sendmail's connect macros (its default Milter.macros.connect, plus
-- {client_resolve} when a site adds it).
if resolve == "-" then
	check("macro", mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.example", "{daemon_name}", "MTA"))
else
	check("macro", mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.example", "{daemon_name}", "MTA",
		"{client_resolve}", resolve))
end
check("conninfo", mt.conninfo(conn, client_name, client_addr))
expect_reply(conn, "connect", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("helo", mt.helo(conn, client_name))
expect_reply(conn, "helo", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("mailfrom", mt.mailfrom(conn, "<sender@client.example>"))
expect_reply(conn, "mail", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("rcptto", mt.rcptto(conn, "<" .. rcpt .. ">"))
if expect == "continue" then
	expect_reply(conn, "rcpt", SMFIR_CONTINUE, "SMFIR_CONTINUE (passed)")
else
	expect_reply(conn, "rcpt", SMFIR_REPLYCODE, "SMFIR_REPLYCODE (greylisted)")
end
mt.echo(string.format("%s (%s, {client_resolve}=%s): %s", client_name, client_addr, resolve, expect))
mt.disconnect(conn)
