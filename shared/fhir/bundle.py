"""A file's encounters as a FHIR R4 (4.0.1) transaction Bundle, built with fhirclient's R4 models.

What goes where (README.md, "FHIR", has the table):

- the patient: named, as every resource's subject, by docpipe's ``patient_id`` as an identifier
  (a logical reference): no Patient resource is made, so none is duplicated or overwritten in a
  store that has the person under its own ids, and the transaction needs no conditional create
  (which some servers cap: Medplum at 8 entries a transaction);
- the uploaded file: a DocumentReference (content type, size, SHA-256, where the original is
  stored, page count, the encounters it records); each page image: a DocumentReference that
  transforms it (the JPEG a reader shows, where the page's text came from);
- each encounter: an Encounter (status from its timing, class from its type, type as text and
  as docpipe's code, period from its dates, provider and facility as display references) and a
  Provenance whose entities are the file's DocumentReference with the page ranges and the
  pages' DocumentReferences, with docpipe's confidence;
- the doubt: ``meta.tag`` (needs-review and its reasons, identity-conflict) on the resources it
  is about, where a FHIR search (``_tag``) finds it.

Every resource is PUT at an id derived from the shell_file_id (UUIDv5), so the same file's Bundle posted twice, or posted again after the file was processed again, leaves one
set of resources. Posting it is one HTTP call: ``POST [base]`` with the Bundle as the body.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from fhirclient.models.attachment import Attachment
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.documentreference import (
    DocumentReference,
    DocumentReferenceContent,
    DocumentReferenceContext,
    DocumentReferenceRelatesTo,
)
from fhirclient.models.encounter import Encounter as FhirEncounter
from fhirclient.models.encounter import EncounterParticipant
from fhirclient.models.extension import Extension
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirinstant import FHIRInstant
from fhirclient.models.identifier import Identifier
from fhirclient.models.meta import Meta
from fhirclient.models.period import Period
from fhirclient.models.provenance import Provenance, ProvenanceAgent, ProvenanceEntity
from fhirclient.models.fhirreference import FHIRReference as Reference

from fhirclient.models.fhirabstractbase import FHIRValidationError

from shared.errors import FhirBundleInvalidError
from shared.fhir import codes
from shared.models import Encounter, Manifest, ShellFile, ShellFilePage, Timing

STATUS = {Timing.HAPPENED: "finished", Timing.PLANNED: "planned"}  # Timing.NONE: no Encounter


def build_bundle(
    row: ShellFile,
    pages: list[ShellFilePage],
    manifest: Manifest,
    *,
    locate: Callable[[str], str] | None = None,
    recorded: dt.datetime | None = None,
) -> dict:
    """The Bundle of one completed file, as JSON. ``locate`` turns a storage key into the URL a
    consumer fetches it from (default: the key itself); ``recorded`` is the Provenance's time
    (default: now)."""
    locate = locate or (lambda key: key)
    recorded = recorded or dt.datetime.now(dt.timezone.utc)
    sfid = row.id
    entries: list[BundleEntry] = []

    patient = _patient_reference(row.patient_id)

    doc_url = _urn(f"{sfid}/document")
    page_urls = {page.page_number: _urn(f"{sfid}/page/{page.page_number}") for page in pages}
    kept = [(n, e) for n, e in enumerate(manifest.encounters, 1) if e.timing in STATUS]
    encounter_urls = {n: _urn(f"{sfid}/encounter/{n}") for n, _ in kept}

    file_tags = []
    if manifest.needs_review:
        file_tags.append(_coding(codes.REVIEW_SYSTEM, codes.NEEDS_REVIEW))
    if manifest.identity_conflict:
        file_tags.append(_coding(codes.REVIEW_SYSTEM, codes.IDENTITY_CONFLICT))
    entries.append(_put(doc_url, _file_document(row, manifest, patient, list(encounter_urls.values()),
                                                locate, file_tags)))
    for page in sorted(pages, key=lambda p: p.page_number):
        flag = manifest.pages_for_review.get(page.page_number)
        tags = [_coding(codes.REVIEW_SYSTEM, codes.NEEDS_REVIEW), _coding(codes.REVIEW_REASON_SYSTEM, flag)] if flag else []
        entries.append(_put(page_urls[page.page_number], _page_document(row, page, patient, doc_url, locate, tags)))

    for n, encounter in kept:
        tags = []
        if encounter.needs_review:
            tags.append(_coding(codes.REVIEW_SYSTEM, codes.NEEDS_REVIEW))
            tags += [_coding(codes.REVIEW_REASON_SYSTEM, reason) for reason in encounter.review_reasons]
        if manifest.identity_conflict:
            tags.append(_coding(codes.REVIEW_SYSTEM, codes.IDENTITY_CONFLICT))
        url = encounter_urls[n]
        entries.append(_put(url, _encounter(sfid, n, encounter, patient, tags)))
        provenance = _provenance(encounter, url, doc_url, page_urls, manifest, recorded, tags)
        entries.append(_put(_urn(f"{sfid}/encounter/{n}/provenance"), provenance))

    bundle = Bundle()
    bundle.type = "transaction"
    bundle.entry = entries
    try:
        checked = bundle.as_json()  # checks every element against the R4 models
        return {"resourceType": "Bundle", "type": checked["type"], "entry": _readable(checked["entry"])}
    except FHIRValidationError as exc:
        # Its text names elements and types, but say nothing of the values: patient data.
        raise FhirBundleInvalidError("the file's encounters did not make a valid FHIR R4 Bundle") from exc


# --- resources -----------------------------------------------------------------------


def _file_document(row: ShellFile, manifest: Manifest, patient: Reference, encounter_urls: list[str],
                   locate, tags: list[Coding]) -> DocumentReference:
    doc = DocumentReference()
    doc.identifier = [_identifier(codes.SHELL_FILE_SYSTEM, str(row.id))]
    doc.status = "current"
    doc.type = _concept(text="Uploaded document")
    doc.subject = patient
    if row.created_at is not None:
        doc.date = FHIRInstant(_instant(row.created_at))
    attachment = Attachment()
    attachment.contentType = row.mime_type or "application/octet-stream"
    attachment.url = locate(row.storage_key)
    if row.byte_size is not None:
        attachment.size = row.byte_size
    if row.sha256:
        # Not Attachment.hash: R4 defines that as the SHA-1 (base64) of the data.
        attachment.extension = [_extension(codes.SHA256, valueString=row.sha256)]
    doc.content = [_content(attachment)]
    doc.extension = [_extension(codes.PAGE_COUNT, valuePositiveInt=manifest.page_count)]
    if encounter_urls:
        doc.context = DocumentReferenceContext()
        doc.context.encounter = [_reference(url) for url in encounter_urls]
    _tag(doc, tags)
    return doc


def _page_document(row: ShellFile, page: ShellFilePage, patient: Reference, doc_url: str, locate,
                   tags: list[Coding]) -> DocumentReference:
    doc = DocumentReference()
    doc.identifier = [_identifier(codes.PAGE_SYSTEM, f"{row.id}/page/{page.page_number}")]
    doc.status = "current"
    doc.type = _concept(text="Page image")
    doc.subject = patient
    if row.created_at is not None:
        doc.date = FHIRInstant(_instant(row.created_at))
    relation = DocumentReferenceRelatesTo()
    relation.code = "transforms"  # this page image was made from the uploaded file
    relation.target = _reference(doc_url)
    doc.relatesTo = [relation]
    attachment = Attachment()
    attachment.contentType = "image/jpeg"
    attachment.url = locate(page.storage_key)
    attachment.title = f"Page {page.page_number}"
    doc.content = [_content(attachment)]
    doc.extension = [
        _extension(codes.PAGE_NUMBER, valuePositiveInt=page.page_number),
        _extension(codes.TEXT_SOURCE, valueCode=page.text_source.value),
    ]
    _tag(doc, tags)
    return doc


def _encounter(sfid: uuid.UUID, n: int, encounter: Encounter, patient: Reference, tags: list[Coding]) -> FhirEncounter:
    found = FhirEncounter()
    found.identifier = [_identifier(codes.ENCOUNTER_SYSTEM, f"{sfid}/encounter/{n}")]
    found.status = STATUS[encounter.timing]
    system, code, display = codes.ENCOUNTER_CLASS[encounter.encounter_type]
    found.class_fhir = _coding(system, code, display)
    kind = encounter.encounter_type
    found.type = [_concept(_coding(codes.ENCOUNTER_TYPE_SYSTEM, kind.value, codes.ENCOUNTER_TYPE_DISPLAY[kind]),
                           text=kind.value)]
    found.subject = patient
    if encounter.date_start or encounter.date_end:
        found.period = Period()
        if encounter.date_start:
            found.period.start = FHIRDateTime(encounter.date_start.isoformat())
        if encounter.date_end:
            found.period.end = FHIRDateTime(encounter.date_end.isoformat())
    provider, facility = _text(encounter.provider), _text(encounter.facility)
    if provider:
        participant = EncounterParticipant()
        participant.type = [_concept(_coding(codes.PARTICIPATION_TYPE, "PPRF", "primary performer"))]
        participant.individual = _display_reference("Practitioner", provider)
        found.participant = [participant]
    if facility:
        found.serviceProvider = _display_reference("Organization", facility)
    _tag(found, tags)
    return found


def _provenance(encounter: Encounter, encounter_url: str, doc_url: str, page_urls: dict[int, str],
                manifest: Manifest, recorded: dt.datetime, tags: list[Coding]) -> Provenance:
    provenance = Provenance()
    provenance.target = [_reference(encounter_url)]
    provenance.recorded = FHIRInstant(_instant(recorded))
    agent = ProvenanceAgent()
    agent.type = _concept(_coding(codes.PROVENANCE_PARTICIPANT, "assembler", "Assembler"))
    who = " ".join(part for part in (manifest.provider, manifest.model) if part)
    agent.who = _display_reference("Device", f"docpipe ({who})")
    provenance.agent = [agent]
    source = ProvenanceEntity()
    source.role = "source"
    source.what = _reference(doc_url)
    source.extension = [_page_range(first, last) for first, last in encounter.page_ranges]
    provenance.entity = [source]
    for number in sorted(encounter.pages()):
        if number in page_urls:
            page = ProvenanceEntity()
            page.role = "source"
            page.what = _reference(page_urls[number])
            provenance.entity.append(page)
    provenance.extension = [_extension(codes.CONFIDENCE, valueDecimal=round(encounter.confidence, 4))]
    _tag(provenance, tags)
    return provenance


# --- elements ------------------------------------------------------------------------


def _urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(codes.ID_NAMESPACE, name)}"


def _put(url: str, resource) -> BundleEntry:
    resource.id = url.removeprefix("urn:uuid:")
    request = BundleEntryRequest()
    request.method = "PUT"
    request.url = f"{resource.resource_type}/{resource.id}"
    return _entry(url, resource, request)


def _entry(url: str, resource, request: BundleEntryRequest) -> BundleEntry:
    entry = BundleEntry()
    entry.fullUrl = url
    entry.resource = resource
    entry.request = request
    return entry


def _identifier(system: str, value: str) -> Identifier:
    identifier = Identifier()
    identifier.system = system
    identifier.value = value
    return identifier


def _coding(system: str, code: str, display: str | None = None) -> Coding:
    coding = Coding()
    coding.system = system
    coding.code = code
    if display:
        coding.display = display
    return coding


def _concept(*codings: Coding, text: str | None = None) -> CodeableConcept:
    concept = CodeableConcept()
    if codings:
        concept.coding = list(codings)
    if text:
        concept.text = text
    return concept


def _reference(url: str) -> Reference:
    reference = Reference()
    reference.reference = url
    return reference


def _patient_reference(patient_id: uuid.UUID) -> Reference:
    reference = Reference()
    reference.type = "Patient"
    reference.identifier = _identifier(codes.PATIENT_ID_SYSTEM, str(patient_id))
    return reference


def _display_reference(kind: str, display: str) -> Reference:
    """A name as the document prints it, not a resource: see README.md, "FHIR"."""
    reference = Reference()
    reference.type = kind
    reference.display = display
    return reference


def _extension(url: str, **value) -> Extension:
    extension = Extension()
    extension.url = url
    for name, item in value.items():
        setattr(extension, name, item)
    return extension


def _page_range(first: int, last: int) -> Extension:
    return _extension(codes.PAGE_RANGE, extension=[_extension("first", valuePositiveInt=first),
                                                   _extension("last", valuePositiveInt=last)])


def _content(attachment: Attachment) -> DocumentReferenceContent:
    content = DocumentReferenceContent()
    content.attachment = attachment
    return content


def _tag(resource, tags: list[Coding]) -> None:
    if tags:
        resource.meta = Meta()
        resource.meta.tag = tags


_FIRST = ("resourceType", "id", "meta", "fullUrl", "resource", "request", "method", "url")


def _readable(value):
    """The JSON as people write FHIR: resourceType, id and meta first, an entry's fullUrl, resource,
    request in that order (order means nothing to a parser)."""
    if isinstance(value, list):
        return [_readable(item) for item in value]
    if not isinstance(value, dict):
        return value
    first = [key for key in _FIRST if key in value]
    return {key: _readable(value[key]) for key in first + [key for key in value if key not in first]}


def _text(value: str | None) -> str | None:
    """A name as printed, on one line; None when nothing is left (FHIR strings are never blank)."""
    text = " ".join((value or "").split())
    return text or None


def _instant(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.isoformat()
