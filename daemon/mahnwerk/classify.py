"""Reply classifier: one label per customer reply, with confidence, facts and reasons.

Why rules and not a model: the label decides what mahnwerk does next (stop dunning on
"paid", wait for a promised date, hand a dispute to a person), and its reasons are
written into the invoice's legal record.  A reason has to be a sentence a clerk can
check against the mail ("paid: 'haben heute überwiesen'"), which cue tables give and a
statistical model does not.

Shape, in the order `classify` runs it:

1. Technical evidence first: a parsed DSN (`mail.bounce`) is a bounce, whatever it
   says.  Headers (RFC 3834 Auto-Submitted, X-Autoreply, Precedence, List-*), the
   sender (MAILER-DAEMON, postmaster) and the subject add weighted evidence.
2. The customer's own words (`own_text`, or `text` when that is empty; never our quoted
   reminder) are normalised once (casefold, ä→ae, ß→ss, accents dropped, contractions
   spelt out, common typos of key words corrected) and split into tokens, clauses and
   sentences.  Cue tables (`_CUES`) hold phrases per label with a weight; a phrase is
   a few words with stems (`ueberwies*`), optional words (`[die|den]`) and gaps (`~3`).
   The longest phrase wins where two overlap, so "Rechnung nie erhalten" (a question:
   send us a copy) beats "nie erhalten" (a dispute: goods missing).
3. Scope rules then change what a cue means: a negation before it in the same clause
   ("noch nicht überwiesen"), or after it within three words (German verb-second: "wir
   zahlen nicht"); a future marker ("wird überwiesen", "will be paid") or a future
   date turning a payment into a promise; a question ("Können wir in Raten zahlen?")
   turning a promise into a question; a condition ("sobald die Teile geliefert sind")
   taking the payment cues inside it out.
4. Scores per label are a noisy-OR of the cue weights.  The safety rule comes last and
   overrides the scores: a reply with a dispute cue is a dispute even when it also
   speaks of paying, since acting on it as paid or promised would chase a customer
   whose complaint nobody read.
5. Facts come from the same text: dates (`datephrases.find_dates`, anchored on the
   mail's own calendar day), amounts (`amounts.find_amounts`) and invoice numbers
   (`invoicerefs.find_invoice_refs`).

Decisions on the ambiguous cases (tests/data/replies holds a row for each):

- Paid with a promise for the rest ("500 € heute überwiesen, Rest folgt") is paid: money
  moved, and the ledger wants the partial amount.  A contest anywhere makes it a dispute.
- Asking for time without a commitment is a question ("wir brauchen noch 2 Wochen",
  "Können wir in Raten zahlen?", "Is it ok if I pay on the 15th?"); stating when is a
  promise ("wir zahlen in zwei Wochen", "wir können erst Anfang Dezember zahlen", an
  instalment plan with amounts or dates, even proposed with "würde").
- "Noch nicht bezahlt" alone says nothing: "other" with low confidence, for a person.
  With a day named it is a promise; with a reason it is what the reason says.
- Payment words inside a condition ("wenn unser Kunde gezahlt hat") are no fact; a
  delivery condition ("wir zahlen, sobald die Teile da sind") is a dispute.
- A dispute cue in a question ("Is this a mistake?") is mostly a question, but a strong
  one still triggers the safety rule.
- Read receipts, newsletters, thanks and unrelated mail are "other".  An auto-generated
  payment advice ("Zahlungsavis") is paid; a person who mentions their holiday while
  promising is a promise (body-only away phrases lose to a clear content cue).
- Facts: promised_date is the date nearest the promise (the last one for instalments);
  paid_date a day up to the mail's day ("am Freitag bezahlt" is the last Friday);
  amount the one nearest the cue (the sum for instalments); none for disputes and
  questions.  return_date is the first day back: "wieder ab 30.11."/"back on" as said;
  "bis (einschließlich) 4.12."/"until"/"through" the day after, moved past Saturday and
  Sunday (holidays are not known here).  Without a Date header no date is resolved.
- Confidence is the winner's noisy-OR score, lowered by the runner-up in proportion to
  how much the two conflict (`_CONFLICT`): one clear cue ≈ 0.8, header evidence ≥ 0.95,
  dispute beside payment cues below 0.6.  Nothing to go on gives "other" at 0.4.

Pure: no I/O, no clock.  The mail's Date header is the only "today" there is.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Final, Literal, cast, get_args

from mahnwerk.amounts import AmountMention, find_amounts
from mahnwerk.datephrases import DateMention, find_dates, numeric_order_for
from mahnwerk.inbound_types import Classification, Facts, InboundMail, Label
from mahnwerk.invoicerefs import find_invoice_refs

__all__ = ["CLASSIFIER_VERSION", "classify"]

CLASSIFIER_VERSION: Final = "rules-1"

# A cue's label, or a pseudo label that scope rules resolve: "notpaid" (a negated
# payment: says nothing by itself), "refuse" (a negated promise: "we won't pay").
_Kind = Literal[
    "paid", "promise", "dispute", "question", "auto_reply", "bounce", "other",
    "notpaid", "refuse", "",
]  # fmt: skip
_CONTENT: Final[tuple[Label, ...]] = ("paid", "promise", "dispute", "question", "other")


def _words(text: str) -> frozenset[str]:
    """A word list written as one string, so that it stays a compact table."""
    return frozenset(text.split())


_KINDS: Final = frozenset(get_args(_Kind))
_Row = tuple[_Kind, float, _Kind | None, tuple[str, ...]]


def _table(text: str) -> tuple[_Row, ...]:
    """Rows `label weight negated pattern ; pattern ...` (see above), one per line; an
    indented line continues the row ("|more|alternatives" or "; another pattern")."""
    logical: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        part = line.strip()
        if line[0].isspace():
            logical[-1] += f" {part}" if part.startswith(";") else part
        else:
            logical.append(part)
    rows: list[_Row] = []
    for line in logical:
        label, weight, negated, patterns = line.split(None, 3)
        kind = "" if label == "neutral" else label
        neg = None if negated == "-" else "" if negated == "0" else negated
        if kind not in _KINDS or (neg is not None and neg not in _KINDS):
            raise ValueError(f"cue table row with an unknown label: {line}")
        pats = tuple(p.strip() for p in patterns.split(" ; "))
        rows.append((cast(_Kind, kind), float(weight), cast("_Kind | None", neg), pats))
    return tuple(rows)


# ---------------------------------------------------------------------------------------
# Cue tables, one row a line: `label weight negated pattern ; pattern ...`; an indented
# line continues the row.  `negated` is what the cue means when a negation has it in
# scope: a label, "notpaid", "refuse", "0" (it then says nothing) or "-" (it cannot be
# negated, e.g. it holds its own "nicht").  Label "neutral" marks a cue that counts only
# when negated ("nicht geliefert"), or, with weight 0, masks a shorter cue ("Mahnung
# stornieren" is not a cancelled order).  Patterns match normalised tokens: lower case,
# ä→ae, ö→oe, ü→ue, ß→ss, contractions spelt out ("won't" → "will not"), numbers as "#",
# € as "eur".  `a|b` alternatives of one word, `stem*`, `[optional]`, `~N` up to N other
# words in between (within a sentence).
# ---------------------------------------------------------------------------------------
_PAID_DE: Final = _table("""
paid       0.85 notpaid  bezahlt|beglichen|ueberwiesen|gezahlt|ausgeglichen|abgebucht|eingezahlt
    |bezahlet
paid       0.9  notpaid  bereits|schon|laengst|soeben|eben|gestern|vorhin ~3 bezahlt|beglichen
    |ueberwiesen|gezahlt|ausgeglichen|angewiesen|erledigt|abgebucht|veranlasst|raus
paid       0.75 notpaid  angewiesen|veranlasst|rausgegangen|rausgeschickt
paid       0.75 notpaid  erledigt
paid       0.8  notpaid  ist|sind|ging|war ~2 raus ; ist|sind ~2 unterwegs ; geld ~2 unterwegs
paid       0.9  notpaid  ueberweisung|zahlung|dauerauftrag|zahlungsauftrag|auftrag ~3 getaetigt
    |ausgefuehrt|veranlasst|erfolgt|gemacht|durchgefuehrt|rausgegangen ; in auftrag gegeben
    ; zur zahlung angewiesen
paid       0.8  -        ueberweisungsbeleg|zahlungsbeleg|zahlungsnachweis|zahlungsbestaetigung
    |kontoauszug|zahlungsavis|avis|ueberweisungsbestaetigung|ueberweisungstraeger|buchungsbeleg
paid       0.8  -        ueberschnitten|ueberschneid*|gekreuzt
paid       0.5  -        zahlungseingang|geldeingang
paid       0.8  notpaid  abgegangen|abgeflossen ; konto ~2 verlassen
paid       0.7  -        sollte|muesste|duerfte ~4 eingegangen|angekommen|gutgeschrieben|da
    ; sollten|muessten|duerften ~4 eingegangen|angekommen|gutgeschrieben|da
paid       0.4  -        quittung|zahlungsreferenz
paid       0.75 notpaid  angestossen|transferiert|zahlungsausgang ; geld|zahlung|betrag|ueberweisung
    ~3 auf dem weg
paid       0.55 notpaid  geld|betrag|zahlung ~3 da|drauf
paid       0.6  notpaid  lastschrift|dauerauftrag ~4 eingezogen|abgebucht|gebucht
paid       0.6  notpaid  per|via|mit paypal|kreditkarte|karte|lastschrift|e-banking|ebanking

paid       0.6  notpaid  teilzahlung|anzahlung|akonto|abschlagszahlung ~3 geleistet|gemacht
""")
_PAID_EN: Final = _table("""
paid       0.85 notpaid  paid|payed|transferred|remitted|wired|settled|debited|cleared
    |reimbursed
paid       0.9  notpaid  already|just|yesterday ~3 paid|payed|transferred|remitted|wired|settled
    |sent|done|made
paid       0.9  notpaid  payment|transfer|remittance|funds|cheque|check|money|ach|wire ~3 sent
    |made|processed|initiated|released|submitted|issued|executed|cleared|went|gone|posted|mailed
    |remitted ; sent|made|processed|initiated|released|submitted|issued|mailed|posted ~3 payment
    |cheque|check|transfer|remittance|funds|money|amount|balance ; payment|transfer ~2 completed
    |complete|successful|through
paid       0.8  notpaid  payment|cheque|check|money|transfer ~3 on its|the way ; in the post
    |mail
paid       0.8  -        proof of payment ; remittance advice|slip ; payment confirmation
    |receipt ; confirmation of payment ; pop attached ; transfer confirmation
paid       0.7  notpaid  all|now done|sorted|settled|squared
paid       0.65 notpaid  done|sorted
paid       0.75 notpaid  taken care of ; been actioned
paid       0.8  notpaid  left|leaving our|my account|bank
paid       0.7  -        should|will have ~2 received|reached|arrived|cleared|got
    ; should be with you ; should be in your account
paid       0.55 notpaid  should|will|shall reach|land|arrive|hit|show|clear
paid       0.7  -        emails|mails|messages|payments ~2 crossed ; crossed in the post
paid       0.6  notpaid  direct debit|standing order ; taken|collected|debited ~3 automatically
paid       0.75 notpaid  sent|paid|transferred via|by|through|per|over
paid       0.55 -        via|by|per|through paypal|zelle|venmo|bacs|ach|wire|card|cheque|check
    |banktransfer|e-banking|chaps|sepa
""")
_PROMISE_DE: Final = _table("""
promise    0.65 refuse   zahle|zahlen|bezahle|bezahlen|ueberweise|ueberweisen|begleiche
    |begleichen|ausgleichen|zahl|ueberweis|ueberweiss
promise    0.85 refuse   werde|werden|wird|will|wollen ~4 zahlen|bezahlen|ueberweisen|begleichen
    |ausgleichen|anweisen|veranlassen|erledigen|ausfuehren|nachholen|ueberwiesen|bezahlt
    |beglichen
promise    0.7  refuse   mach|mache|erledige|erledigen|kuemmere|kuemmern ~2 ich|wir|mich|uns|das
    |es|darum|drum ; holen|hole ~3 nach ; nachholen|erledigen
promise    0.8  refuse   zahlung|ueberweisung|betrag|geld|rest|restbetrag|restzahlung
    |rate ~2 folgt|folgen|kommt
promise    0.75 refuse   geht|gehen ~3 raus|zahlung|ueberweisung|zahlungslauf
promise    0.7  -        zahlungslauf|zahllauf|zahlungsrhythmus|zahlungsturnus ; zur zahlung
    |freigabe vorgesehen|freigegeben
promise    0.55 0        freigegeben|freigabe
promise    0.5  -        uebersehen|vergessen|untergegangen|durchgerutscht|verschwitzt
promise    0.6  refuse   raten|monatsraten|teilzahlungen|teilbetraegen|tranchen
promise    0.55 refuse   monatlich # eur
promise    0.6  refuse   zusage|zusagen|versprechen|verspreche|vorschlag|anbieten ; sage
    |sagen ~8 zu ; schlage|schlagen ~3 vor ; biete|bieten ~4 an
promise    0.75 refuse   angewiesen|beauftragt|gebeten ~6 zu bezahlen|zahlen|ueberweisen
    |begleichen|anweisen
promise    0.7  refuse   wird|werden ~4 bei ihnen|eingehen|gutgeschrieben|ankommen
promise    0.75 refuse   zahlung|ueberweisung|ausgleich|begleichung ~4 vornehmen|leisten
    |durchfuehren|taetigen|anweisen|ausfuehren|veranlassen
promise    0.65 -        kommt|kommen ~2 die tage|bald|demnaechst|morgen|naechste|naechsten
promise    0.4  -        die tage ; demnaechst|zeitnah|baldmoeglichst|schnellstmoeglich|umgehend
    ; in kuerze
""")
_PROMISE_EN: Final = _table("""
promise    0.55 refuse   pay|paying|transfer|settle|remit|wire
promise    0.85 refuse   will|shall|gonna ~3 pay|transfer|settle|remit|wire|clear|process
    |arrange ; going to ~3 pay|transfer|settle|remit|wire|clear|process|arrange ; will
    |shall ~3 send|make|arrange|process|release|schedule ~2 payment|transfer|cheque|check|funds
    |remittance
promise    0.8  refuse   get ~3 paid|settled|sorted|processed
promise    0.7  refuse   will do ; on my|our list ; will look into it ; take care of it|this
    |that
promise    0.75 -        to follow ; payment|transfer|cheque|check ~2 follows
promise    0.7  -        payment|pay run ; scheduled|earmarked|queued|approved for payment
    ; scheduled for|to ; approved ~2 for payment|processing
promise    0.55 0        scheduled|approved
promise    0.5  -        forgot|forgotten|oversight|overlooked ; slipped through the cracks|net
    ; slipped my mind
promise    0.6  refuse   instalments|installments ; payment plan ; monthly payments
promise    0.65 refuse   sort|sorting ~3 out ; being processed|paid ; in process|progress
    ; pending approval ; go|goes|going ~2 out
promise    0.65 refuse   cut|write|issue|post|mail ~2 check|cheque
promise    0.7  refuse   will|shall ~2 send ~3 half|rest|balance|remainder|money|amount|funds|it
promise    0.55 -        rest|remainder|balance ~3 in # days|weeks|months
promise    0.6  refuse   propose|suggest|offer ~3 pay|paying|instalments|installments|payment
    |payments
promise    0.4  -        shortly|soon|asap ; straight|right away
promise    0.75 refuse   expect|expecting ~3 payment|funds|transfer|cheque|check|money
promise    0.7  refuse   will be with you ; will be in your account ; in hand
promise    0.7  refuse   will|shall ~3 action|sort|handle|clear|settle ~3 this|it|payment
""")
_DISPUTE_DE: Final = _table("""
dispute    0.8  0        falsch|falsche|falscher|falschen|fehlerhaft|fehlerhafte|inkorrekt
    |unrichtig|unstimmig*
dispute    0.8  -        nicht korrekt|richtig|nachvollziehbar|berechtigt|vereinbart ; stimmt
    |stimmen ~3 nicht ; keine|nicht ~2 leistung|lieferung|ware erhalten|bekommen
dispute    0.85 0        zu hoch|viel ; ueberhoeht|zuviel|doppelt|zweimal|doppelte|doppelter
    ; zu viel berechnet
dispute    0.75 0        gutgeschrieben|gutschrift|stornorechnung|erstatten|erstattung
    |rueckerstattung|zurueckzahlen|zurueckerstatten ; geld zurueck
dispute    0.8  0        storniert|storno|stornieren|stornierung|annulliert
dispute    0.8  0        beschwerde|garantie|gewaehrleistung|garantiefall|nacherfuellung
    |schadensersatz|ruecktritt|zurueckgetreten|aufrechnung|aufrechnen
    ; nicht wie beschrieben
dispute    0.85 0        gekuendigt|kuendigung|widerruf*|widersprech*|widerspreche|widerspruch
    |bestreit*|bestritten|unberechtigt|ungerechtfertigt|hinfaellig|unzulaessig
dispute    0.85 0        reklamation|reklamiert|reklamier*|beanstand*|mangel|maengel|maengeln
    |mangelhaft*|mangelhafte|defekt|defekte|kaputt|beschaedigt*|unbrauchbar|nachbesserung
    |geruegt|ruege|schlecht|pfusch
dispute    0.75 0        fehlt|fehlen|fehlende|fehlenden|fehlten|fehlte|unvollstaendig*
    ; teillieferung
dispute    0.75 0        zurueckgeschickt|zurueckgesendet|zurueckgegeben|zurueckgeben|retoure
    |retourniert|ruecksendung|ruecksendeschein|ruecklastschrift|zurueckgebucht|rueckbuchung
    ; geht|gehen|kommt|kommen|ging ~2 zurueck
dispute    0.8  -        nicht zustaendig ; nicht ihr kunde ; nicht kunde ; keinen|kein vertrag
    ; betrifft nicht uns ; betrifft uns nicht ; nicht fuer uns ; kennen|kenne ~3 nicht
    ; nicht mehr bei uns ; falsche|falscher|falschen empfaenger|adresse|firma|person|kunde
    ; falsch adressiert ; vertan|verwechselt|verwechslung
dispute    0.8  0        anwalt|rechtsanwalt|anwaeltin|rechtsanwaeltin|kanzlei
    |verbraucherzentrale|klage
dispute    0.85 0        einbehalten|zurueckbehalt*|zurueckbehalten|minderung|mindern ; behalten
    |behalte ~4 ein
dispute    0.75 0        unter vorbehalt ; weicht|weichen ~4 ab ; abweich*
dispute    0.6  0        korrigier*|korrektur|berichtig* ; richtige|korrekte rechnung
dispute    0.4  dispute  rabatt|nachlass|abzueglich|abgezogen|gekuerzt|kuerzen|vereinbart
    |vereinbarte|vereinbarten|abgesprochen|zugesagt|zugesagte
dispute    0.6  0        abzocke|frechheit|unverschaemt
dispute    0.85 0        chargeback
dispute    0.75 -        wo bleibt|bleiben
dispute    0.4  dispute  vereinbarung|absprache|angebot|kostenvoranschlag|angeboten
dispute    0.5  0        verrechnet|verrechnen
dispute    0.65 0        befreit|steuerbefreit|steuerfrei
dispute    0.85 -        nichts ~3 schuldig
dispute    0.85 -        keine grundlage|rechtsgrundlage|berechtigung ; vertrag ~3 beendet
    |ausgelaufen|abgelaufen|aufgeloest
dispute    0.6  -        nur|only ~3 #|eine|ein|one stunde|stunden|hour|hours|tag|tage|day|days
dispute    0.45 -        berechnet|abgerechnet|charged|billed|invoiced ~4 aber|but|obwohl
    |although|statt|instead ; berechnet haben sie ; you have charged|billed ; you charged|billed
dispute    0.6  0        hoeher|teurer als
dispute    0.8  -        nicht|keine meine|unsere|unser|mein rechnung|bestellung|auftrag
dispute    0.7  -        nur # von
dispute    0.75 0        unzufrieden|kostenlos|gratis|kostenfrei
dispute    0.75 -        wenn|sobald|erst|bis ~4 ware|lieferung|teile|geraet|bestellung
    |material ~3 da|geliefert|angekommen|eingetroffen|vollstaendig
""")
_DISPUTE_EN: Final = _table("""
dispute    0.8  0        incorrect|wrong|inaccurate|discrepancy|discrepancies|erroneous|mistake
    |error
dispute    0.8  -        not correct|right|accurate ; not what we agreed ; does|do not match
    ; never agreed|authorised|authorized|approved
dispute    0.85 0        overcharged|overbilled|duplicate|duplicated|duplicates|twice ; too high
    |much ; double charged|billed|counted
dispute    0.8  0        refund|refunded|chargeback|credited ; credit note|memo ; charge back
dispute    0.75 0        cancelled|canceled|cancel|cancellation|terminated|void
dispute    0.85 0        dispute|disputed|disputing|contest|contested|challenge
dispute    0.8  0        damaged|broken|faulty|defective|unusable|poor|unacceptable|substandard
    |unsatisfactory|redone|shoddy ; never worked|work ; not working ; does not work
    ; not fit for purpose
dispute    0.75 0        missing|incomplete|shortfall ; only # of ; only # out of
dispute    0.75 0        returned|returning ; sent|send|going|shipped back ; return policy
dispute    0.8  -        wrong person|company|address|customer|recipient|business
    ; no account with ; not a customer ; never done|did business ; no longer work*|with
    ; who are you ; do not know you ; do not know who you are ; not the right person|contact
    |department ; have no contract|agreement
dispute    0.8  0        lawyer|solicitor|attorney ; legal action ; small claims
dispute    0.6  0        corrected|correction|amended ; for|with the correct
dispute    0.4  dispute  discount|minus|deducted|deduct|withheld|agreed|quoted|promised
    ; left off ; not applied|included
dispute    0.85 0        withhold|withholding ; not prepared to pay ; refuse to pay
dispute    0.8  0        complaint|complaints|complain|complained|warranty|guarantee|damages
    |compensation ; not as described ; on hold
dispute    0.7  0        offset|set-off ; set off
dispute    0.65 0        exempt|exemption ; reverse charge
dispute    0.85 -        nothing ~2 owed|owing|due|outstanding ; owe ~2 nothing
dispute    0.85 -        no basis|grounds ; contract ~3 ended|expired|terminated
dispute    0.75 0        undone|unfinished|unfertig
dispute    0.75 -        where is|are ~3 order|goods|delivery|parts|items|shipment
dispute    0.6  0        higher than ; more than ~3 quote|quoted|agreed|estimate|offer
dispute    0.35 0        quote|estimate
dispute    0.8  -        not our|my order|invoice|account ; not ours|mine
dispute    0.75 0        unhappy|dissatisfied ; free trial ; free of charge
dispute    0.75 -        once|when|until ~4 goods|parts|items|order|delivery|shipment ~3 arrive
    |arrives|arrived|delivered|received|complete
""")
_QUESTION_DE: Final = _table("""
question   0.8  -        kopie|rechnungskopie|duplikat|zweitschrift ; rechnung|pdf ~2 nochmal
    |nochmals|erneut ; nochmal|nochmals|erneut ~3 schicken|senden|zusenden|zukommen|mailen
    |uebermitteln
question   0.7  -        schicken|senden|zusenden|zukommen|mailen|uebermitteln|ausstellen
    |stellen ~4 rechnung|pdf ; rechnung|pdf ~4 schicken|senden|zusenden|zukommen|mailen
    |uebermitteln|ausstellen
question   0.65 -        bankverbindung|iban|bic|kontonummer|kontodaten|bankdaten
question   0.7  -        bestellnummer|po-nummer|po|bestell-nr|auftragsnummer|kostenstelle
    |ust-id|ustid|steuernummer|leitweg*|lieferantennummer|referenznummer|ust-idnr
    |kreditorennummer
question   0.65 -        ansprechpartner|ansprechpartnerin|rueckruf|zurueckrufen
    ; wer ~4 zustaendig
question   0.7  -        stundung|zahlungsaufschub|aufschub|fristverlaengerung|zahlungsziel
    ; verlaenger*|verschieben|aufschieben ; mehr|etwas|noch|weitere zeit ; brauchen|benoetigen
    |brauche|benoetige ~3 wochen|tage|monate|zeit ; geduld ; finanziell eng|schwierig ; engpass
    |liquiditaetsengpass|liquiditaet* ; schwierigen lage|situation ; nicht leisten
    ; zahlungsunfaehig ; kein geld
question   0.75 -        bitten|bitte|ersuchen ~2 ratenzahlung|stundung|zahlungsaufschub
    |aufschub|fristverlaengerung|ratenvereinbarung ; ratenzahlung|teilzahlung
    |ratenvereinbarung ~3 moeglich
question   0.45 -        bitte ~4 schicken|senden|zusenden|nennen|mitteilen|bestaetigen|geben
    |zukommen|uebermitteln|nachreichen|einreichen
    |angeben|ausstellen ; koennen|koennten|wuerden sie ~4 schicken|senden|zusenden|nennen
    |mitteilen|bestaetigen
question   0.6  -        um welche|welcher|welches ~2 rechnung|betrag|leistung ; welche|welcher
    |welches ~2 rechnung|bankverbindung|konto|betrag ; wofuer|wozu
question   0.55 -        lieferantenportal|portal|rechnungseingang*|e-rechnung|xrechnung|zugferd
    |rechnungsadresse|ausgestellt|umstellen
question   0.35 -        klaeren|klaerung|rueckfrage|nachfrage
question   0.7  -        erlassen|erlass|waive|waived|waiver|verzichten|kulanz|goodwill
question   0.8  -        fehlt|fehlen|missing ~4 ust-idnr|ust-id|ustid|steuernummer|bestellnummer
    |iban|bankverbindung|po|vat|leitweg-id|angabe|angaben|lieferantennummer ; ust-idnr|ust-id
    |ustid|steuernummer|bestellnummer|iban|bankverbindung|po|vat|angabe|angaben ~4 fehlt|fehlen
    |missing
question   0.65 -        koennen|kann ~4 nicht buchen|bearbeiten|verbuchen|freigeben|verarbeiten
question   0.6  -        warten|abwarten ~3 bis|noch ; noch ~2 warten
question   0.6  -        benoetigen|brauchen|benoetige|brauche ~4 lieferschein|unterlagen|nachweis
    |formular|bestellnummer|bestaetigung|unterschrift ; zahlung|zahlungsfreigabe|freigabe
    ~4 benoetigen|brauchen ; lassen ~4 zukommen
question   0.6  -        verwendungszweck|zahlungsreferenz ; aufschluessel*|aufstellung
    |einzelaufstellung|leistungsnachweis|stundennachweis|nachweise
question   0.55 -        rufen ~3 an|zurueck ; anrufen|anruf|telefonisch|telefonat|besprechen
    |telefonieren
question   0.75 -        moeglichkeit ~3 ratenzahlung|stundung|aufschub|teilzahlung
question   0.6  -        ist|waere es ~2 moeglich|ok|okay ; in ordnung wenn ; aendern|aenderung
    |umschreiben ~4 rechnung|name|firmenname|adresse|anschrift ; rechnung|name|firmenname
    |adresse|anschrift ~4 aendern|umschreiben
neutral    0.8  question oeffnen|lesbar|angehaengt|anhang
""")
_QUESTION_EN: Final = _table("""
question   0.8  -        copy of ; resend|re-send|reissue|re-issue ; invoice copy
    ; send ~3 again ; send ~2 invoice|copy
question   0.7  -        bank|banking|account|payment|wire details|instructions|info ; iban
    |swift|bic ; sort code ; routing number
question   0.7  -        po ; po number ; purchase order ; vat|tax number|id|reg|registration
    ; w # ; vendor|supplier form|setup|set-up|portal|registration ; set you up ; coupa|ariba
    |tungsten|basware
question   0.6  -        who should|do|can i|we ; contact person ; point of contact ; speak
    |talk to ; call me|back
question   0.7  -        extension|hardship|postpone|defer ; more time ; grace period
    ; push ~2 back ; bit|little|some|few more ~2 time|days|weeks ; cash flow ; cashflow
    ; things are slow|tight ; can not ~2 afford ; unable ~2 afford ; unable to pay
question   0.6  -        which|what invoice|account|order|reference ; what is this|it for
question   0.6  -        before we|i ~2 pay|release|process|can ; can not ~3 process|release
    |pay ~3 without|otherwise ; unable ~3 process|release|pay ~3 without|otherwise
    ; not processed ; paid otherwise ; without it
question   0.45 -        can|could|would you ~3 send|provide|confirm|resend|let|tell|advise
    |check ; please send|provide|confirm|advise
question   0.5  -        do you accept|take ; can i|we pay by|with|via
question   0.6  -        need|needs|require|requires|required ~4 po|document|documents|form
    |number|details|copy|signature|receipt ; in order to process
question   0.65 -        hold off ; wait until|till ; appreciate it if ; payment arrangement
    ; arrangement ; contact details ; phone number
question   0.65 -        not ~2 have|got ~3 money|funds|cash ; no money|funds|cash
question   0.65 -        statement of account ; statement ; breakdown|itemised|itemized
    ; break ~2 down ; change ~4 name|address|invoice|details|company ; is it ok|okay|alright
    |possible|fine ~3 if|to ; what ~3 for ? ; remit-to|remittance address ; remit to address
    ; mailing address ; where ~3 send ~3 check|cheque|payment ; who is this from ; who sent
neutral    0.8  question open|opened|attached|readable
""")
_OTHER: Final = _table("""
other      0.35 -        danke|dankeschoen|thanks|thank|thx|cheers|merci
other      0.5  -        zur kenntnis ; kenntnis genommen ; noted ; notiert ; ok|okay|okey
    ; alles klar ; verstanden ; understood ; got it ; will pass it on ; passed it on
other      0.6  -        weitergeleitet|weitergegeben|weiterleiten|forwarded|forwarding ; leite
    |leiten ~3 weiter ; passed ~3 on ; cc ; copied in ; kopie an
other      0.65 -        newsletter|abmelden|abbestellen|unsubscribe|webinar ; opt out
    ; gewonnen|gewinnspiel|congratulations|prize|winner|seo|ranking|sonderaktion|sale
    ; gift card ; click here ; hier klicken ; angebot fuer ; quote|quotation for|by
other      0.6  -        frohe weihnachten|ostern|feiertage|festtage ; guten rutsch
    ; merry christmas ; happy holidays|new year
other      0.7  -        gelesen|lesebestaetigung ; read receipt ; was read on
other      0.5  -        neue anschrift ; umgezogen ; we have moved ; new address
""")
# Neutral cues: they count only when negated ("nicht geliefert", "never received"), or
# they mask a shorter cue (overlaps go to the longer phrase).
_NEUTRAL: Final = _table("""
neutral    0.8  dispute  geliefert|erhalten|bekommen|angekommen|eingetroffen|erbracht
    |vollstaendig|gekommen|bestellt|beauftragt|geleistet|ausgefuehrt|funktioniert|einverstanden
    |akzeptieren|akzeptiert|anerkennen|vereinbart|erschienen|entspricht|entsprechen
    |uebereinstimmt|uebereinstimmen|zufrieden
neutral    0.8  dispute  owe|schulden|schuldig|reflect|reflects|widerspiegelt|finished|fertig
    |abgeschlossen|fertiggestellt ; received|arrived
    |delivered|provided|completed|activated|shipped|ordered
    |agree|accept|accepted|authorised|authorized|requested|signed|got|happy|satisfied|match
    |matches ; turned|showed up
neutral    0.8  question rechnung|rechnungen|rechnungskopie|invoice|invoices|mahnung|erinnerung
    |bill ~4 erhalten|bekommen|vorliegen|vorliegt|angekommen|received|got|arrived|seen
neutral    0.8  question erhalten|bekommen|received|got|seen ~3 rechnung|rechnungen|invoice
    |invoices|bill
neutral    0.8  question keine|no rechnung|invoice
neutral    0.0  -        mahnung|mahnungen|erinnerung|reminder|reminders|mahngebuehr ~2 storn*
    |gegenstandslos|ignorieren|cancel|ignore|disregard ; storn*|cancel|ignore
    |disregard ~3 mahnung|erinnerung|reminder|reminders
neutral    0.0  -        angewiesen auf ; auf ~4 angewiesen
neutral    0.0  -        my|our mistake|bad|fault|error ; mein|unser fehler|versehen ; skonto
    ; early|prompt payment discount ; cash discount
neutral    0.0  -        no|kein problem|worries|ursache|sorge
neutral    0.0  -        sorry for the delay ; entschuldigung fuer die verspaetung
neutral    0.0  -        iban|bic|swift|bankverbindung|bank|kontonummer|blz|ust-idnr|ust-id
    |ustid|steuernummer|st-nr|hrb|amtsgericht|registergericht|handelsregister|vat|reg [.] :
    ; iban|bic|swift|kontonummer|blz|ust-idnr|ust-id|ustid|steuernummer|hrb|vat|reg [.] #|de
    |at|ch|gb|nl|lu|li|ie|fr ; vat|company reg|registration|no|number [.] [:] #|gb
neutral    0.0  -        wie ~3 besprochen|vereinbart|abgesprochen ; as discussed|agreed|arranged
""")
_AUTO: Final = _table("""
auto_reply 0.8  -        nicht im buero|hause|haus ; ausser haus|hause ; abwesend|abwesenheit
    |abwesenheitsnotiz ; out of [the] office ; ooo ; annual|parental|sick|maternity
    |paternity leave ; on leave|holiday|vacation ; away from the|my office|desk
auto_reply 0.55 -        elternzeit|mutterschutz|urlaub|urlaubsbedingt|krankheitsbedingt
auto_reply 0.75 -        betriebsferien|betriebsurlaub|feiertagsbedingt ; office|buero|praxis
    ~3 closed|geschlossen ; closed ~3 holidays|feiertage|urlaub|christmas ; when we reopen
    ; respond|reply|antworten ~3 your message|email|ihre nachricht|mail
auto_reply 0.7  -        wieder erreichbar|zurueck|anwesend|da ; wieder im buero
    ; ab [dem] ~3 wieder ; keinen|keinem|eingeschraenkt|eingeschraenktem zugriff ; no
    |limited access to ; on|upon my return ; when i return ; when i am back ; will return
    ; will be back ; returning on ; back in the office ; nicht weitergeleitet
    ; in dringenden faellen ; for urgent matters|enquiries|queries ; in urgent cases
    ; wird nicht gelesen ; nach meiner rueckkehr ; rueckkehr
auto_reply 0.45 -        vielen dank fuer ihre nachricht|e-mail|email|mail|anfrage ; thank you
    |thanks for your email|message|e-mail
auto_reply 0.85 -        automatische|automatisch|automatisierte ~2 antwort|nachricht|generiert
    |erstellt|eingangsbestaetigung|benachrichtigung|mail|e-mail|email ; automated|automatic
    |auto-generated|auto-reply ~2 response|reply|message|email ; this is an automated|automatic
    ; do not reply to this ; bitte antworten sie nicht ; antworten sie bitte nicht
auto_reply 0.75 -        ticketnummer|ticket-nummer|vorgangsnummer|ticket-id|ticket
    ; ihre anfrage ~3 eingegangen|erhalten ; your ~2 request|ticket|enquiry|email
    |message ~3 received|created|logged ; we have received your ; eingangsbestaetigung
auto_reply 0.75 -        mailbox|postfach|adresse ~3 not|nicht|no ~2 monitored|betreut
    |ueberwacht|genutzt|gelesen|use|longer ; no longer in use|monitored ; nicht mehr genutzt
    |aktiv|besetzt
""")
_BOUNCE: Final = _table("""
bounce     0.85 -        could|can not be delivered ; was not delivered ; nicht zugestellt
    |zustellbar ; unzustellbar|undeliverable|undelivered ; delivery has failed
    ; delivery failure ; delivery to ~4 failed|delayed ; mail delivery
    ; zustellung ~3 fehlgeschlagen|gescheitert|verzoegert ; uebermittlung ~4 fehlgeschlagen
    ; permanent fatal errors ; permanent error ; user unknown|not found ; empfaenger unbekannt
    ; mailbox full|unavailable ; postfach ~2 voll ; address could not be found
    ; mail system at host ; delivery status notification ; zustellstatus ; returned mail
""")
_CUES_TABLE: Final[tuple[tuple[_Row, ...], ...]] = (
    _PAID_DE, _PAID_EN, _PROMISE_DE, _PROMISE_EN, _DISPUTE_DE, _DISPUTE_EN,
    _QUESTION_DE, _QUESTION_EN, _OTHER, _NEUTRAL, _AUTO, _BOUNCE,
)  # fmt: skip

# Scope words.  Negators, and words after one that undo it ("nicht nur", "no problem").
_NEGATORS: Final = _words(
    "nicht nie niemals nichts kein keine keinen keiner keinem keines ohne noch-nicht not "
    "never no nothing none neither nor without"
)
_NEG_UNDONE_BY: Final = _words(
    "nur only problem probleme problemo worries worry ursache sorge wahr doubt issue long "
    "later spaeter frueher earlier erst mal even sooner"
)
# Clause barriers for negation and future scope: conjunctions that start a new thought.
_BARRIERS: Final = _words(
    "aber sondern weil da denn und oder doch jedoch allerdings sobald wenn falls nachdem "
    "bevor but because since and or though although however once if unless after before "
    "while whereas"
)
# Words that open a condition; payment words within the next few tokens are hypothetical.
_CONDITIONS: Final = _words(
    "sobald wenn falls nachdem sofern vorausgesetzt bis once if unless until provided after"
)
_CONDITION_REACH: Final = 6
_FUTURE: Final = _words(
    "wird werden werde wirst will shall going gonna soll sollen demnaechst bald morgen "
    "uebermorgen tomorrow tmrw naechste naechsten naechster next spaeter later"
)
# Hedged payment claims ("may already be paid") count less.
_HEDGES: Final = _words(
    "vielleicht eventuell evtl moeglicherweise wahrscheinlich glaube glauben denke denken "
    "maybe perhaps possibly probably might may think believe"
)
# Verb forms that say "done" whatever day follows ("went through on Friday").
_PAST_FORMS: Final = _words(
    "went gone sent paid payed made transferred wired remitted settled done processed "
    "cleared reach land arrive hit show clear bezahlt ueberwiesen beglichen gezahlt "
    "ausgeglichen angewiesen abgebucht erledigt "
    "veranlasst getaetigt rausgegangen"
)
# "will have been taken", "should have gone", "dürfte angekommen sein": done, presumed.
_PRESUMING: Final = _words("will would should must sollte duerfte muesste wird")
_PERFECT: Final = _words("have has been sein haben worden")
_RHETORIC: Final = _words("schon bereits doch laengst already")
_PAST: Final = _words(
    "bereits schon laengst gestern vorgestern letzte letzten letzter soeben vorhin "
    "already yesterday last ago"
)
# A clause that opens with one of these and a pronoun asks ("Können wir ...").
_ASKING_VERBS: Final = _words(
    "kann koennen koennte koennten darf duerfen waere ist sind muss muessen soll sollen "
    "can could may might would is are do does should shall will"
)
_PRONOUNS: Final = _words("wir ich man sie es das we i you it this there")
_INABILITY: Final = _words(
    "kann koennen koennte koennten can could able unable moeglich possible leisten"
)
# Words about money changing hands, for "payment ... by 5 December".
_MONEY: Final = re.compile(
    r"(?:zahl|bezahl|ueberweis|geld|betrag|payment|pay|transfer|money|funds|settle|remit)"
)
# Words that make a bare "?" about the invoice (else it is about something else).
_DOMAIN: Final = re.compile(
    r"(?:rechnung|zahl|bezahl|ueberweis|betrag|mahnung|forderung|konto|iban|raten|frist"
    r"|verwendungszweck|skonto|kosten|gebuehr|preis|rabatt|lastschrift|ratenzahlung"
    r"|invoice|pay|amount|balance|bill|remit|account|owe|instal|reminder|due|charge|fee"
    r"|statement|price|cost|check|cheque|refund|credit|mistake|fehler|irrtum|subscription"
    r"|abo|plan)"
)

# Spellings mapped before matching: contractions, chat shorthand.
_SPELLING: Final[Mapping[str, tuple[str, ...]]] = {
    "won't": ("will", "not"), "wont": ("will", "not"), "can't": ("can", "not"),
    "cant": ("can", "not"), "cannot": ("can", "not"), "shan't": ("shall", "not"),
    "dont": ("do", "not"), "didnt": ("did", "not"), "doesnt": ("does", "not"),
    "havent": ("have", "not"), "hasnt": ("has", "not"), "hadnt": ("had", "not"),
    "isnt": ("is", "not"), "wasnt": ("was", "not"), "arent": ("are", "not"),
    "werent": ("were", "not"), "couldnt": ("could", "not"), "wouldnt": ("would", "not"),
    "shouldnt": ("should", "not"), "aint": ("is", "not"),
    "ive": ("i", "have"), "tmrw": ("tomorrow",), "tmr": ("tomorrow",),
    "tomorow": ("tomorrow",), "tommorow": ("tomorrow",), "pls": ("please",),
    "plz": ("please",), "thx": ("thanks",), "thanx": ("thanks",), "sry": ("sorry",),
    "grad": ("gerade",), "nochmal": ("nochmal",), "nen": ("einen",), "ne": ("eine",),
    "eur": ("eur",), "€": ("eur",), "$": ("usd",), "£": ("gbp",), "euro": ("eur",),
    "euros": ("eur",), "bzw": ("bzw",), "asap": ("asap",), "o.k": ("ok",),
}  # fmt: skip
_SUFFIXES: Final = (("n't", ("not",)), ("'ll", ("will",)), ("'ve", ("have",)),
                    ("'re", ("are",)), ("'m", ("am",)), ("'d", ("would",)), ("'s", ()))  # fmt: skip

# Header evidence: (header, value pattern, label, weight, reason).
_HEADER_RULES: Final[tuple[tuple[str, str, Label, float, str], ...]] = (
    ("content-type", r"multipart/report.*delivery-status", "bounce", 0.97, "DSN report"),
    ("x-failed-recipients", r".", "bounce", 0.95, "X-Failed-Recipients"),
    ("content-type", r"multipart/report.*disposition-notification", "other", 0.9,
     "read receipt (MDN)"),
    ("auto-submitted", r"^auto-replied", "auto_reply", 0.97, "Auto-Submitted"),
    ("auto-submitted", r"^auto-(?!replied)", "auto_reply", 0.75, "Auto-Submitted"),
    ("x-autoreply", r"^(?!no\b|false\b)", "auto_reply", 0.95, "X-Autoreply"),
    ("x-autorespond", r"^(?!no\b|false\b)", "auto_reply", 0.95, "X-Autorespond"),
    ("x-autogenerated", r"reply", "auto_reply", 0.95, "X-AutoGenerated"),
    ("x-auto-response", r".", "auto_reply", 0.9, "X-Auto-Response"),
    # Exchange sets "All" on its own out-of-office and system mail, not on a person's.
    ("x-auto-response-suppress", r"\ball\b", "auto_reply", 0.85, "X-Auto-Response-Suppress"),
    ("precedence", r"auto[_-]?reply", "auto_reply", 0.95, "Precedence"),
    ("precedence", r"bulk|list|junk", "other", 0.5, "Precedence"),
    ("list-unsubscribe", r".", "other", 0.6, "List-Unsubscribe"),
    ("list-id", r".", "other", 0.5, "List-Id"),
    ("feedback-type", r".", "other", 0.8, "Feedback-Type"),
)  # fmt: skip
# Subject evidence, on the normalised subject: (pattern, label, weight).
_SUBJECT_RULES: Final[tuple[tuple[str, Label, float], ...]] = (
    (r"undeliver|unzustellbar|nicht zustellbar|delivery status notification"
     r"|mail delivery fail|returned mail|delivery fail|failure notice|undelivered"
     r"|zustellung fehlgeschlagen|fehler bei der zustellung|non remis|nicht zugestellt"
     r"|delivery has failed|message not delivered|unzustellbare", "bounce", 0.8),
    (r"^(?:(?:aw|re|wg|fw|fwd|sv|antw)\s*:\s*)*(?:automatische antwort|automatic reply"
     r"|auto(?:matic)?[ -]?(?:reply|response)|autoreply|abwesenheit|abwesend|out of (?:the )?"
     r"office|ooo\b|auto:|urlaub|on leave|on holiday|away from|abwesenheitsnotiz"
     r"|eingangsbestaetigung|empfangsbestaetigung|lesebestaetigung|ihre anfrage|your request"
     r"|we received|we have received|thank you for (?:your|contacting))", "auto_reply", 0.7),
    # A ticket number, unless the subject is a reply ("AW: [Ticket#1]" is a person answering).
    (r"^(?!(?:aw|re|antw|sv)\s*:).*?(?:\[(?:ticket|case|request|anfrage|vorgang)\s*(?:#|nr|no|id)"
     r"|\[#\d|\bticket\s*#|request id|ticket(?:nummer| number| id)\b|#\#\d)", "auto_reply", 0.6),
    (r"^(?:gelesen|read|lesebestaetigung|read receipt)\s*:", "other", 0.8),
)  # fmt: skip
_BOUNCE_SENDERS: Final = _words(
    "mailer-daemon mailerdaemon mail-daemon postmaster maildaemon mailer"
)
_NOREPLY: Final = re.compile(r"^(?:no-?reply|do-?not-?reply|donotreply|noreply|automailer)")

# ---------------------------------------------------------------------------------------
# Normalisation and tokens
# ---------------------------------------------------------------------------------------
_FOLD: Final = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "’": "'", "‘": "'", "`": "'", "´": "'"}
)
_TOKEN: Final = re.compile(
    r"(?P<br>\n[ \t]*\n)"
    r"|(?P<num>\d+(?:[.,:/]\d+)+\.?|\d{1,2}\.(?=[ ]?[^\W\d_])|\d+)"
    r"|(?P<word>[^\W\d_]+(?:[-'’`´][^\W\d_]+)*(?:['’]|n['’]t)?)"
    r"|(?P<punct>[^\w\s])"
)
_SENTENCE_END: Final = frozenset(".!?;¶")
_CLAUSE_END: Final = frozenset(".!?;¶,:-")


@lru_cache(maxsize=4096)
def _fold(word: str) -> str:
    """Casefold and spell umlauts out, so "Grüße", "Gruesse" and "GRÜSSE" are one word."""
    w = word.casefold().translate(_FOLD)
    if not w.isascii():
        w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
    return w


@dataclass(frozen=True, slots=True)
class _Tok:
    norm: str
    start: int  # span in the original text, for quoting it in reasons
    end: int


def _word_forms(word: str) -> tuple[str, ...]:
    """A word's normalised tokens: contractions spelt out, hyphens of compounds dropped."""
    w = _fold(word)
    if w in _SPELLING:
        return _SPELLING[w]
    for suffix, tail in _SUFFIXES:
        if w.endswith(suffix) and len(w) > len(suffix):
            head = w[: -len(suffix)]
            if suffix == "n't":
                head = {"wo": "will", "ca": "can", "sha": "shall"}.get(head, head)
            return (*_word_forms(head), *tail)
    w = w.replace("'", "")
    if "-" in w and w not in _LEXICON:
        w = w.replace("-", "")
    return (_correct(w),)


def _tokenise(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        s, e = m.span()
        if kind == "br":
            toks.append(_Tok("¶", s, e))
        elif kind == "num":
            toks.append(_Tok("#", s, e))
        elif kind == "word":
            toks.extend(_Tok(f, s, e) for f in _word_forms(m.group()))
        else:
            ch = m.group()
            if ch == "-" and not (s > 0 and text[s - 1].isspace()):
                continue  # "RE-2026" or "E-Mail": a joiner, not a dash between clauses
            ch = _SPELLING.get(ch, (ch,))[0] if ch in "€$£" else ch
            toks.append(_Tok(ch, s, e))
    return toks


# ---------------------------------------------------------------------------------------
# Cue compilation and typo correction
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Cue:
    kind: _Kind
    weight: float
    negated: _Kind | None
    pattern: str
    regex: re.Pattern[str]
    size: int  # literal elements: the longer phrase wins an overlap


def _compile(pattern: str) -> tuple[re.Pattern[str], int]:
    parts: list[str] = []
    size = 0
    for element in pattern.split():
        if element.startswith("~"):
            parts.append(rf"(?:[^ .!?;¶]+ ){{0,{int(element[1:])}}}")
            continue
        optional = element.startswith("[") and element.endswith("]")
        alts = element.strip("[]").split("|")
        body = "|".join(
            re.escape(a[:-1]) + "[^ ]*" if a.endswith("*") and len(a) > 1 else re.escape(a)
            for a in alts
        )
        parts.append(f"(?:({body}) )?" if optional else f"({body}) ")
        size += 0 if optional else 1
    return re.compile("(?<= )" + "".join(parts)), size


def _build_cues() -> tuple[_Cue, ...]:
    cues: list[_Cue] = []
    for table in _CUES_TABLE:
        for kind, weight, negated, patterns in table:
            for pattern in patterns:
                regex, size = _compile(pattern)
                cues.append(_Cue(kind, weight, negated, pattern, regex, size))
    # Longest phrase first; then the heavier cue.
    cues.sort(key=lambda c: (-c.size, -len(c.pattern), -c.weight))
    return tuple(cues)


def _lexicon() -> tuple[frozenset[str], tuple[str, ...]]:
    """Words of the cue tables: exact words, and stems ("ueberwies*")."""
    words: set[str] = set()
    stems: set[str] = set()
    for table in _CUES_TABLE:
        for _, _, _, patterns in table:
            for pattern in patterns:
                for element in pattern.split():
                    for alt in element.strip("[]").split("|"):
                        if alt.endswith("*"):
                            stems.add(alt[:-1])
                        elif alt.isalpha() or "-" in alt:
                            words.add(alt)
    return frozenset(words), tuple(sorted(stems))


_LEXICON, _STEMS = _lexicon()
_CUES: Final = _build_cues()


def _anchors() -> tuple[dict[str, list[int]], dict[str, list[tuple[str, int]]], list[int]]:
    """Which cues can match at all, by a word of their first element: word -> cues,
    stem prefix -> (stem, cue); cues that start with an optional element always run."""
    words: dict[str, list[int]] = {}
    stems: dict[str, list[tuple[str, int]]] = {}
    always: list[int] = []
    for n, cue in enumerate(_CUES):
        first = cue.pattern.split()[0]
        if first.startswith("["):
            always.append(n)
            continue
        for alt in first.split("|"):
            if alt.endswith("*"):
                stems.setdefault(alt[:3], []).append((alt[:-1], n))
            else:
                words.setdefault(alt, []).append(n)
    return words, stems, always


_BY_WORD, _BY_STEM, _ALWAYS = _anchors()


def _candidates(toks: Sequence[_Tok]) -> list[_Cue]:
    """The cues whose first word occurs, in table order (longest phrase first)."""
    found = set(_ALWAYS)
    for norm in {t.norm for t in toks}:
        found.update(_BY_WORD.get(norm, ()))
        for stem, n in _BY_STEM.get(norm[:3], ()):
            if norm.startswith(stem):
                found.add(n)
    return [_CUES[n] for n in sorted(found)]


# Typo targets: long words of the cue tables and a few key words, by first letter.
_TYPO_TARGETS: Final[Mapping[str, tuple[str, ...]]] = {
    first: tuple(
        w
        for w in sorted(_LEXICON | {"ueberwiesen", "ueberweisung"})
        if w[0] == first and len(w) >= 6 and w.isalpha()
    )
    for first in "abcdefghijklmnopqrstuvwxyz"
}
# Real words one letter away from a cue word: never "corrected".
_REAL_WORDS: Final = _words(
    "enthalten erhalten verhalten gestellt erstellt bestellt bezahle bezahlte bezahlten "
    "gezahlte beglich beglichene erledige erledigte erledigen payer payee prepaid repaid "
    "unpaid overpaid underpaid settle settles resend resent recieve besprochen versprochen "
    "gesprochen bestaetigt"
)


def _distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance, or limit + 1 once it is certain to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


@lru_cache(maxsize=8192)
def _correct(word: str) -> str:
    """A cue word for a near miss ("bezalt" -> "bezahlt"); known words stay as they are."""
    if len(word) < 6 or not word.isalpha() or word in _LEXICON or word in _REAL_WORDS:
        return word
    if any(word.startswith(s) for s in _STEMS):
        return word
    limit = 2 if len(word) >= 12 else 1
    best = (limit + 1, word)
    for target in _TYPO_TARGETS.get(word[0], ()):
        d = _distance(word, target, limit)
        if d < best[0]:
            best = (d, target)
    return best[1]


# ---------------------------------------------------------------------------------------
# Reading a text: cue hits with their scope
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Hit:
    kind: _Kind
    weight: float
    cue: _Cue
    toks: tuple[int, ...]  # token indices of the literal words
    note: str = ""  # what a scope rule did, for the reasons
    asked: bool = False  # a dispute cue in a question: also evidence of a question


@dataclass(slots=True)
class _Reading:
    """The tokens of one text, their clauses and sentences, and the cue hits."""

    text: str
    toks: list[_Tok]
    clause: list[int]
    sentence: list[int]
    # Token -> (the day lies after the mail's day, the phrase), from `find_dates`.
    date_at: dict[int, tuple[bool, str, str]] = field(default_factory=dict)  # + tense
    ahead: list[str] = field(default_factory=list)  # phrases of days from the mail's day on
    hits: list[_Hit] = field(default_factory=list)

    def quote(self, idx: Sequence[int]) -> str:
        if not idx:
            return ""
        s = self.text[self.toks[min(idx)].start : self.toks[max(idx)].end]
        return " ".join(s.split())

    def context(self, idx: Sequence[int], before: int = 3, after: int = 2) -> str:
        """The cue with a few words around it in its clause: what a reason quotes."""
        clause = self.clause_range(min(idx))
        lo = max(min(idx) - before, clause.start)
        hi = min(max(idx) + after, clause.stop - 1)
        while hi > max(idx) and self.toks[hi].norm in _BARRIERS:
            hi -= 1
        while hi > lo and not self.toks[hi].norm[0].isalnum():
            hi -= 1
        while lo < hi and not self.toks[lo].norm[0].isalnum():
            lo += 1
        return self.quote([lo, hi])

    def clause_range(self, i: int) -> range:
        c = self.clause[i]
        lo = i
        while lo > 0 and self.clause[lo - 1] == c:
            lo -= 1
        hi = i
        while hi + 1 < len(self.toks) and self.clause[hi + 1] == c:
            hi += 1
        return range(lo, hi + 1)

    def sentence_range(self, i: int) -> range:
        s = self.sentence[i]
        lo = i
        while lo > 0 and self.sentence[lo - 1] == s:
            lo -= 1
        hi = i
        while hi + 1 < len(self.toks) and self.sentence[hi + 1] == s:
            hi += 1
        return range(lo, hi + 1)


def _read(text: str, dates: Sequence[DateMention] = (), anchor: date | None = None) -> _Reading:
    toks = _tokenise(text)
    clause: list[int] = []
    sentence: list[int] = []
    c = s = 0
    for t in toks:
        clause.append(c)
        sentence.append(s)
        if t.norm in _CLAUSE_END:
            c += 1
        if t.norm in _SENTENCE_END:
            s += 1
    reading = _Reading(text, toks, clause, sentence)
    tok_starts = [t.start for t in toks]
    for m in dates:
        if anchor is not None and m.value >= anchor and m.tense != "past":
            reading.ahead.append(m.text)
        if anchor is None or (m.value == anchor and m.tense == "future"):
            continue  # "heute" in a future clause says nothing about the tense
        lo = bisect_right(tok_starts, m.start) - 1
        for i in range(max(lo, 0), len(toks)):
            if toks[i].start >= m.end:
                break
            if toks[i].end > m.start:
                reading.date_at[i] = (m.value > anchor, m.text, m.tense)
    joined = " " + " ".join(t.norm for t in toks) + " "
    starts: list[int] = []
    pos = 1
    for t in toks:
        starts.append(pos)
        pos += len(t.norm) + 1
    claimed: set[int] = set()
    for cue in _candidates(toks):
        for found in cue.regex.finditer(joined):
            idx = tuple(
                bisect_right(starts, found.start(g)) - 1
                for g in range(1, (found.lastindex or 0) + 1)
                if found.start(g) >= 0
            )
            if not idx or claimed.intersection(idx):
                continue
            claimed.update(idx)
            if cue.kind or cue.negated:
                reading.hits.append(_Hit(cue.kind, cue.weight, cue, idx))
    for hit in reading.hits:
        _apply_scope(reading, hit)
    return reading


def _negator_at(r: _Reading, i: int) -> bool:
    if r.toks[i].norm not in _NEGATORS:
        return False
    nxt = r.toks[i + 1].norm if i + 1 < len(r.toks) else ""
    if nxt in _NEG_UNDONE_BY:
        return False
    # "invoice no. 12", "no, ...": "no" negates only a following word.
    return not (r.toks[i].norm == "no" and not nxt.isalpha())


def _in_scope(
    r: _Reading, hit: _Hit, words: frozenset[str] | None, before: int, after: int
) -> int | None:
    """Index of a scope word (a negator when `words` is None) acting on the hit."""
    first, last = min(hit.toks), max(hit.toks)
    clause = r.clause[first]

    def found(i: int) -> bool:
        if words is None:
            return _negator_at(r, i)
        return r.toks[i].norm in words

    # Inside the phrase (a gap), then before it, then after it; a barrier ends the scope.
    for i in range(first + 1, last):
        if i not in hit.toks and found(i):
            return i
    for i in range(first - 1, max(first - before, 0) - 1, -1):
        if r.clause[i] != clause or r.toks[i].norm in _BARRIERS:
            break
        if found(i):
            return i
    for i in range(last + 1, min(last + after, len(r.toks) - 1) + 1):
        if r.clause[i] != clause or r.toks[i].norm in _BARRIERS:
            break
        if found(i):
            return i
    return None


def _asks(r: _Reading, i: int) -> bool:
    """Whether token i stands in a question: its clause ends with "?" or opens verb first."""
    clause = r.clause_range(i)
    sentence = r.sentence_range(i)
    if r.toks[clause[-1]].norm == "?":
        return True
    for span in (clause, sentence):
        words = [r.toks[k].norm for k in span if r.toks[k].norm.isalpha()]
        if len(words) >= 2 and words[0] in _ASKING_VERBS and words[1] in _PRONOUNS:
            return r.toks[sentence[-1]].norm == "?" or span is clause
    return False


def _conditional(r: _Reading, hit: _Hit) -> bool:
    """A payment word inside "sobald ...", "once ...", "wenn ..." is not a fact."""
    first = min(hit.toks)
    for i in range(first - 1, max(first - _CONDITION_REACH, 0) - 1, -1):
        if r.sentence[i] != r.sentence[first] or r.toks[i].norm in ".,;":
            break
        if r.toks[i].norm in _CONDITIONS:
            if r.toks[i].norm not in ("bis", "until"):
                return True
            # "bis die Ware da ist" is a condition; "bis zum 4.12.", "until the end of
            # the month" are deadlines.
            ahead = [t.norm for t in r.toks[i + 1 : i + 4]]
            return (
                bool(ahead)
                and ahead[0] in _CLAUSE_OPENERS
                and not any(w == "#" or w in _DAYS for w in ahead)
            )
    return False


_CLAUSE_OPENERS: Final = _words(
    "die der das den dem des wir ich sie er es alles alle unser unsere unseren ihr ihre man "
    "the we i you it they all our your this that"
)
_DAYS: Final = _words(
    "montag dienstag mittwoch donnerstag freitag samstag sonntag morgen ende anfang mitte "
    "monday tuesday wednesday thursday friday saturday sunday tomorrow end next naechste "
    "naechsten kommenden spaetestens monatsende woche week month monat monats kw eom "
    "januar februar maerz april mai juni juli august september oktober november dezember "
    "january february march june july october december jan feb mar apr jun jul aug sep "
    "sept oct okt nov dec dez"
)


def _apply_scope(r: _Reading, hit: _Hit) -> None:
    cue = hit.cue
    own_negation = any(r.toks[i].norm in _NEGATORS for i in hit.toks)
    if cue.negated is not None and not own_negation:
        neg = _in_scope(r, hit, None, before=5, after=3)
        if neg is not None:
            hit.note = f"negation: '{r.quote([neg])}' with '{r.quote(hit.toks)}'"
            hit.kind = cue.negated
            if hit.kind == "dispute":
                hit.weight = max(hit.weight, 0.75)
            if hit.kind == "refuse":
                inability = _in_scope(r, hit, _INABILITY, before=5, after=3)
                hit.kind = "question" if inability is not None else "dispute"
                hit.weight = 0.6 if inability is not None else 0.75
                hit.note += " (cannot pay)" if inability is not None else " (will not pay)"
            return
    if not cue.kind and cue.negated is not None:
        hit.kind = ""  # a neutral cue that no negation reached says nothing
        return
    if hit.kind == "dispute" and _asks(r, min(hit.toks)):
        # "Is this a mistake?" asks more than it contests; it still counts for the
        # safety rule when the cue is strong ("Why were we charged twice?").
        hit.weight *= 0.6
        hit.asked = True
        hit.note = f"question: '{r.quote(hit.toks)}' is asked"
        return
    if hit.kind not in ("paid", "promise"):
        return
    if hit.kind == "promise" and _asks(r, min(hit.toks)):
        hit.kind = "question"
        hit.note = f"question: '{r.quote(hit.toks)}' is asked, not promised"
        return
    if _conditional(r, hit):
        hit.note = f"condition: '{r.quote(hit.toks)}' only if something happens first"
        hit.kind = ""
        return
    if hit.kind == "paid":
        _paid_tense(r, hit)
    if (
        hit.kind == "paid"
        and _asks(r, min(hit.toks))
        and _in_scope(r, hit, _RHETORIC, before=5, after=3) is None
    ):
        hit.weight *= 0.5  # "Ist die Zahlung angekommen?"; not "hab ich doch schon bezahlt?"
    hedge = _in_scope(r, hit, _HEDGES, before=5, after=2)
    if hedge is not None:
        hit.weight *= 0.6
        hit.note = f"hedge: '{r.quote([hedge])}' with '{r.quote(hit.toks)}'"


def _paid_tense(r: _Reading, hit: _Hit) -> None:
    """A payment word about a day after the mail ("überweisung am 2.12.") is a promise.

    Dates found by `datephrases` decide where there are any in the clause; else future
    grammar ("wird überwiesen", "will be paid") and time words without a past marker.
    """
    clause = r.clause_range(min(hit.toks))
    words = [r.toks[i].norm for i in clause]
    if any(
        w in _PRESUMING and _PERFECT.intersection(words[k + 1 : k + 4]) for k, w in enumerate(words)
    ):
        return  # "will have been debited", "sollte inzwischen überwiesen worden sein"
    days = [r.date_at[i] for i in clause if i in r.date_at]
    if days:
        past_form = any(r.toks[i].norm in _PAST_FORMS for i in hit.toks)
        later = [
            text for after, text, tense in days if after and (tense == "future" or not past_form)
        ]
        if later and not any(not after for after, _, _ in days):
            hit.kind = "promise"
            hit.note = f"future: '{later[0]}' makes '{r.quote(hit.toks)}' a promise"
        return
    fut = _in_scope(r, hit, _FUTURE, before=5, after=4)
    if fut is not None and _in_scope(r, hit, _PAST, before=5, after=4) is None:
        hit.kind = "promise"
        hit.note = f"future: '{r.quote([fut])}' makes '{r.quote(hit.toks)}' a promise"


# ---------------------------------------------------------------------------------------
# Scores and decision
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Evidence:
    weights: dict[str, list[float]] = field(default_factory=dict)
    reasons: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: set[str] = field(default_factory=set)  # labels with header, subject or sender evidence

    def add(self, label: str, weight: float, reason: str) -> None:
        self.weights.setdefault(label, []).append(weight)
        self.reasons.setdefault(label, []).append((weight, reason))

    def score(self, label: str) -> float:
        p = 1.0
        for w in self.weights.get(label, ()):
            p *= 1.0 - w
        return 1.0 - p


# How much a runner-up of one label takes from the winner's confidence.
_CONFLICT: Final[Mapping[tuple[str, str], float]] = {
    ("paid", "promise"): 0.25, ("promise", "paid"): 0.25, ("paid", "other"): 0.15,
    ("promise", "other"): 0.15, ("question", "other"): 0.15, ("dispute", "other"): 0.1,
    ("dispute", "question"): 0.3, ("question", "dispute"): 0.6,
}  # fmt: skip
_SAFETY_MIN: Final = 0.5  # a dispute score from here on beats paid and promise
_NOTHING: Final = 0.3  # below this no content label is claimed: "other"


def _header_values(mail: InboundMail, name: str) -> tuple[str, ...]:
    return tuple(v for v in mail.headers.get(name, ()) if isinstance(v, str))


def _technical(mail: InboundMail, ev: _Evidence) -> None:
    for name, pattern, label, weight, what in _HEADER_RULES:
        for value in _header_values(mail, name):
            if re.search(pattern, value.strip().casefold()):
                ev.add(label, weight, f"header {what}: {value.strip()[:60]}")
                ev.meta.add(label)
                break
    subject = " ".join(_fold(mail.subject).split())
    for pattern, label, weight in _SUBJECT_RULES:
        m = re.search(pattern, subject)
        if m:
            ev.add(label, weight, f"subject: '{mail.subject.strip()[:80]}'")
            ev.meta.add(label)
    local = mail.from_address.partition("@")[0].casefold()
    if local in _BOUNCE_SENDERS:
        ev.add("bounce", 0.9 if local != "postmaster" else 0.75, f"sender {mail.from_address}")
    elif _NOREPLY.match(local):
        ev.add("auto_reply", 0.3, f"sender {mail.from_address}")
        ev.meta.add("auto_reply")


def _content(reading: _Reading, ev: _Evidence) -> None:
    notpaid: list[_Hit] = []
    for hit in reading.hits:
        if hit.note:
            ev.notes.append(hit.note)
        if hit.kind == "notpaid":
            notpaid.append(hit)
        elif hit.kind and hit.kind not in ("refuse",):
            ev.add(hit.kind, hit.weight, f"{hit.kind}: '{reading.context(hit.toks)}'")
            if hit.asked:
                ev.add("question", hit.weight, f"question: '{reading.quote(hit.toks)}' asked")
    # A "?" about the invoice asks something even without a question cue; one in a
    # mail about something else does not.
    anywhere = any(_DOMAIN.match(t.norm) for t in reading.toks)
    asked = sorted({reading.sentence[i] for i, t in enumerate(reading.toks) if t.norm == "?"})
    for s in asked:
        span = [i for i in range(len(reading.toks)) if reading.sentence[i] == s]
        here = any(_DOMAIN.match(reading.toks[i].norm) for i in span)
        if (here or anywhere) and any(reading.toks[i].norm.isalpha() for i in span):
            ev.add("question", 0.4 if here else 0.3, f"question: '{reading.quote(span)[:80]}'")
    money = any(_MONEY.match(t.norm) for t in reading.toks)
    if reading.ahead and money and not ev.weights.get("paid") and not ev.weights.get("promise"):
        ev.add("promise", 0.45, f"promise: money and a day ahead: '{reading.ahead[0]}'")
    if notpaid and reading.ahead:
        why = f"promise: not paid yet ('{reading.quote(notpaid[0].toks)}'), but names a day"
        ev.add("promise", 0.65, f"{why}: '{reading.ahead[0]}'")
    elif notpaid and not ev.weights.get("paid"):
        ev.add("other", 0.3, f"not paid yet: '{reading.context(notpaid[0].toks)}'")


def _decide(ev: _Evidence) -> tuple[Label, float, list[str]]:
    """The label, its confidence and the decisive reasons."""
    s = {label: ev.score(label) for label in ("bounce", "auto_reply", *_CONTENT)}
    reasons: list[str] = []
    content = {k: s[k] for k in _CONTENT}
    best: Label = max(content, key=lambda k: (content[k], k == "dispute"))
    if s["paid"] >= 0.5 and best == "promise":
        best = "paid"
        reasons.append("paid: a payment made outweighs a promise for the rest")
    if content[best] < _NOTHING:
        best = "other"
    if best in ("paid", "promise") and s["dispute"] >= _SAFETY_MIN:
        reasons.append(f"safety: dispute cues beat {best} cues")
        best = "dispute"
    elif best == "dispute":
        beaten = [r for k in ("paid", "promise") for _, r in ev.reasons.get(k, ())]
        if beaten:
            reasons.append(f"safety: a dispute, whatever else it says ({beaten[0]})")
    technical: Label = "bounce" if s["bounce"] >= s["auto_reply"] else "auto_reply"
    # A person who writes that they are away and also pays or promises is a person.
    human = (
        technical == "auto_reply"
        and "auto_reply" not in ev.meta
        and best in ("paid", "promise", "dispute")
        and content[best] >= 0.6
        and s[technical] < 0.95
    )
    if not human and s[technical] > 0 and (s[technical] >= 0.9 or s[technical] > content[best]):
        best = technical
    top = s[best]
    rest = [(s[k], k) for k in s if k != best and s[k] > 0]
    runner = max(rest) if rest else (0.0, "")
    penalty = _CONFLICT.get((best, runner[1]), 0.5)
    if best in ("bounce", "auto_reply") or runner[1] in ("bounce", "auto_reply"):
        penalty = 0.35
    if best == "dispute" and runner[1] in ("paid", "promise"):
        penalty = 0.6
    if best == "other" and top < _NOTHING:
        confidence = 0.4 if not rest else 0.35
    else:
        confidence = top * (1.0 - penalty * runner[0])
    return best, round(min(max(confidence, 0.05), 0.99), 3), reasons


# ---------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------
def _nearest(
    mentions: Iterable[DateMention], spans: Sequence[tuple[int, int]]
) -> DateMention | None:
    best: tuple[int, DateMention] | None = None
    for m in mentions:
        d = min((max(a - m.end, m.start - b, 0) for a, b in spans), default=0)
        if best is None or d < best[0]:
            best = (d, m)
    return best[1] if best else None


_COUNT_WORDS: Final[Mapping[str, int]] = {
    "zwei": 2, "drei": 3, "vier": 4, "fuenf": 5, "sechs": 6, "sieben": 7, "acht": 8,
    "neun": 9, "zehn": 10, "zwoelf": 12, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12,
}  # fmt: skip
_INSTALMENT_WORDS: Final = _words(
    "raten monatsraten teilzahlungen teilbetraegen tranchen zahlungen instalments "
    "installments payments parts teilen"
)
_BACK_WORDS: Final = _words("wieder zurueck ab back return returning returns from erreichbar")
_UNTIL_WORDS: Final = _words(
    "bis einschliesslich inklusive until till through thru to including incl"
)


def _instalments(reading: _Reading, future: Sequence[DateMention]) -> int:
    count = 0
    for i, t in enumerate(reading.toks):
        if t.norm not in _INSTALMENT_WORDS:
            continue
        # "drei Raten", "3 instalments", "4 monatlichen Raten"
        for prev in reading.toks[max(i - 2, 0) : i][::-1]:
            raw = reading.text[prev.start : prev.end]
            n = int(raw) if raw.isdigit() else _COUNT_WORDS.get(prev.norm, 0)
            if 1 < n <= 60:
                count = max(count, n)
                break
    dated = len({m.value for m in future})
    if (
        count == 0
        and dated >= 2
        and any(
            t.norm in _INSTALMENT_WORDS or t.norm.startswith(("rate", "remain", "rest", "balance"))
            for t in reading.toks
        )
    ):
        count = dated
    return count


def _return_date(
    reading: _Reading, dates: Sequence[DateMention], anchor: date
) -> tuple[date, str] | None:
    """The first day back: "wieder ab 30.11." as said; "bis 4.12." the next working day."""
    ahead = [m for m in dates if m.value >= anchor]
    if not ahead:
        return None
    starts = [t.start for t in reading.toks]

    def words_before(m: DateMention, n: int) -> set[str]:
        i = bisect_right(starts, m.start) - 1
        return {
            reading.toks[k].norm
            for k in range(max(i - n + 1, 0), i + 1)
            if reading.toks[k].end <= m.start
        }

    for m in ahead:
        if words_before(m, 4) & _BACK_WORDS:
            return m.value, f"return_date {m.value} from '{m.text}'"
    last = max(ahead, key=lambda m: m.value)
    if words_before(last, 4) & _UNTIL_WORDS or len(ahead) > 1:
        back = last.value + timedelta(days=1)
        while back.weekday() >= 5:
            back += timedelta(days=1)
        return back, f"return_date {back} from '{last.text}' (day after the absence)"
    return last.value, f"return_date {last.value} from '{last.text}'"


def _dates(mail: InboundMail, body: str) -> list[DateMention]:
    """Dates in the customer's text, resolved against the mail's own calendar day."""
    assert mail.date is not None
    offset = mail.date.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else None
    order = numeric_order_for(mail.from_address, minutes)
    return find_dates(body, mail.date.date(), numeric_order=order)


def _facts(
    mail: InboundMail,
    label: Label,
    reading: _Reading,
    dates: Sequence[DateMention],
    known: Collection[str],
) -> tuple[Facts, list[str]]:
    """Facts for the label, from the customer's text only (the subject gives refs)."""
    body = reading.text
    refs = find_invoice_refs(f"{body}\n{mail.subject}", known)
    if label not in ("paid", "promise", "auto_reply"):
        return Facts(invoice_refs=refs), []
    if mail.date is None:
        return Facts(invoice_refs=refs), ["no Date header: dates in the text not resolved"]
    anchor = mail.date.date()
    reasons: list[str] = []
    if label == "auto_reply":
        back = _return_date(reading, dates, anchor)
        if back is None:
            return Facts(invoice_refs=refs), reasons
        return Facts(invoice_refs=refs, return_date=back[0]), [back[1]]
    cue_spans = [
        (reading.toks[min(h.toks)].start, reading.toks[max(h.toks)].end)
        for h in reading.hits
        if h.kind == label
    ]
    amounts = find_amounts(body)
    if label == "paid":
        # A past (or tenseless) day up to the mail's day; a past-tense clause wins a tie.
        past = [m for m in map(_looking_back(anchor), dates) if m.value <= anchor]
        m = _nearest([d for d in past if d.tense != "future"] or past, cue_spans)
        amount = _nearest_amount(amounts, cue_spans)
        if m is not None:
            reasons.append(f"paid_date {m.value} from '{m.text}' ({m.rule})")
        if amount is not None:
            reasons.append(f"amount {amount}")
        return Facts(paid_date=m.value if m else None, amount=amount, invoice_refs=refs), reasons
    future = [m for m in dates if m.value >= anchor]
    future = [d for d in future if d.tense != "past"] or future
    count = _instalments(reading, future)
    m = max(future, key=lambda d: d.value) if count else _nearest(future, cue_spans)
    if m is not None:
        what = "last instalment" if count else m.rule
        reasons.append(f"promised_date {m.value} from '{m.text}' ({what})")
    if count:
        reasons.append(f"installments: {count}")
        # Several amounts with instalments are the instalments: their sum is the promise.
        amount = sum((a.value for a in amounts), Decimal(0)) if amounts else None
    else:
        amount = _nearest_amount(amounts, cue_spans)
    if amount is not None:
        reasons.append(f"amount {amount}")
    facts = Facts(
        promised_date=m.value if m else None,
        amount=amount,
        invoice_refs=refs,
        installments=count,
    )
    return facts, reasons


def _looking_back(anchor: date) -> Callable[[DateMention], DateMention]:
    """A paid claim's "am Freitag", "on the 20th" resolved ahead of the mail (the date
    reader took the clause for future) means the last such day before it."""

    def back(m: DateMention) -> DateMention:
        if m.value <= anchor:
            return m
        if m.rule == "weekday" and m.value - timedelta(days=7) < anchor:
            return replace(m, value=m.value - timedelta(days=7), rule=f"{m.rule}, last")
        if m.rule == "day_of_month":
            prev = (m.value.replace(day=1) - timedelta(days=1)).replace(day=1)
            try:
                return replace(m, value=prev.replace(day=m.value.day), rule=f"{m.rule}, last")
            except ValueError:
                return m
        return m

    return back


def _nearest_amount(
    amounts: Sequence[AmountMention], spans: Sequence[tuple[int, int]]
) -> Decimal | None:
    best: tuple[int, Decimal] | None = None
    for a in amounts:
        d = min((max(s - a.end, a.start - e, 0) for s, e in spans), default=0)
        if best is None or d < best[0]:
            best = (d, a.value)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------
def classify(mail: InboundMail, *, known_invoices: Collection[str] = ()) -> Classification:
    """Label a reply, from the customer's own words, the subject and the headers.

    `known_invoices` are the invoice numbers we hold (for `facts.invoice_refs`).  Never
    raises on odd input: an empty mail is "other" with low confidence.
    """
    ev = _Evidence()
    if mail.bounce is not None:
        b = mail.bounce
        detail = ", ".join(x for x in (b.status, b.action, ",".join(b.recipients)) if x)
        weight = 0.98 if b.permanent else 0.96
        ev.add("bounce", weight, f"delivery status notification ({detail or 'no details'})")
    _technical(mail, ev)
    # Only the customer's own words: when quote and signature stripping left nothing, the
    # rest of `text` is our quoted reminder (amounts, dates, "bereits bezahlt"), never theirs.
    body = mail.own_text.strip()
    anchor = mail.date.date() if mail.date is not None else None
    dates = _dates(mail, body) if anchor is not None else []
    reading = _read(body, dates, anchor)
    _content(reading, ev)
    # The customer's own subject ("Bezahlt", "Reklamation"), weaker than the body; ours
    # ("Zahlungserinnerung: Rechnung ...") holds no cue.
    subject = _REPLY_PREFIX.sub("", mail.subject).strip()
    if subject:
        for hit in _read(subject).hits:
            # Away and bounce subjects are read by `_SUBJECT_RULES` already.
            if hit.kind and hit.kind not in ("notpaid", "refuse", "auto_reply", "bounce"):
                why = f"subject {hit.kind}: '{subject[:80]}'"
                ev.add(hit.kind, hit.weight * _SUBJECT_WEIGHT, why)
    label, confidence, decisive = _decide(ev)
    if mail.bounce is not None:
        label, confidence = "bounce", max(confidence, 0.95)
    facts, fact_reasons = _facts(mail, label, reading, dates, known_invoices)
    reasons = _reasons(ev, label) + decisive + ev.notes[:4] + fact_reasons
    return Classification(
        label=label,
        confidence=confidence,
        facts=facts,
        reasons=tuple(dict.fromkeys(reasons)),
        version=CLASSIFIER_VERSION,
    )


_REPLY_PREFIX: Final = re.compile(
    r"^(?:\s*(?:re|aw|wg|fw|fwd|sv|antw|tr)\s*(?:\[\d+\])?\s*:)+", re.IGNORECASE
)
_SUBJECT_WEIGHT: Final = 0.7


def _reasons(ev: _Evidence, label: Label) -> list[str]:
    own = sorted(ev.reasons.get(label, ()), key=lambda r: -r[0])[:4]
    out = [r for _, r in own] or [f"{label}: no cue for any other label"]
    if label in ("paid", "promise", "question", "other"):
        d = sorted(ev.reasons.get("dispute", ()), key=lambda r: -r[0])[:1]
        out += [f"weak {r}" for _, r in d]
    return out
