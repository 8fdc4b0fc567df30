-- miltertest script: the TLS macros of a client that presented a
-- certificate. Sendmail says in {verify} whether it verified it (OK) and
-- sends {cert_subject}/{cert_issuer} in any case; Postfix (macro v) has no
-- {verify} and sends {cert_subject}/{cert_issuer} only for a certificate it
-- verified. Both send them with HELO (the EHLO after STARTTLS).
--
--   miltertest -D socket=inet:PORT@127.0.0.1 -D mta=sendmail -D verify=OK \
--     -D subject=mx.partner.example -D expect=continue \
--     -D rcpt=rcpt@test.example -s tls.lua
--
-- mta is "sendmail" or "postfix"; verify "-" sends no {verify}; subject "-"
-- sends no certificate macros; expect is "continue" (the recipient passes)
-- or "reply" (a reply code: greylisted).

for _, v in ipairs({"socket", "mta", "verify", "subject", "expect", "rcpt"}) do
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
if mta == "postfix" then
	check("macro", mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.example", "{daemon_name}", "smtpd", "v", "Postfix 3.7.11"))
else
	check("macro", mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.example", "{daemon_name}", "MTA"))
end
check("conninfo", mt.conninfo(conn, "dsl-198-51-100-7.dyn.example", "198.51.100.7"))
expect_reply(conn, "connect", SMFIR_CONTINUE, "SMFIR_CONTINUE")

local macros = {"{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384"}
if verify ~= "-" then
	table.insert(macros, "{verify}")
	table.insert(macros, verify)
end
if subject ~= "-" then
	table.insert(macros, "{cert_subject}")
	table.insert(macros, subject)
	table.insert(macros, "{cert_issuer}")
	table.insert(macros, "Test CA")
end
check("macro", mt.macro(conn, SMFIC_HELO, table.unpack(macros)))
check("helo", mt.helo(conn, "desktop-7f3k"))
expect_reply(conn, "helo", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("mailfrom", mt.mailfrom(conn, "<sender@client.example>"))
expect_reply(conn, "mail", SMFIR_CONTINUE, "SMFIR_CONTINUE")
check("rcptto", mt.rcptto(conn, "<" .. rcpt .. ">"))
if expect == "continue" then
	expect_reply(conn, "rcpt", SMFIR_CONTINUE, "SMFIR_CONTINUE (passed)")
else
	expect_reply(conn, "rcpt", SMFIR_REPLYCODE, "SMFIR_REPLYCODE (greylisted)")
end
mt.echo(string.format("%s {verify}=%s {cert_subject}=%s: %s", mta, verify, subject, expect))
mt.disconnect(conn)
