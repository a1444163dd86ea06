"""Sample documents for the demo and the tests, generated here so no third-party file is needed.

Every document is about one fictional patient and is drawn with PyMuPDF's built-in
Helvetica; raster documents are rendered from the same layout at 180-200 DPI so Tesseract
reads them well. Output is byte-for-byte repeatable (noise comes from fixed seeds, PDFs get no
random /ID), except locked.pdf, whose AES encryption salts itself.

``write_samples`` writes the good documents, ``write_bad_samples`` the ones the pipeline
must refuse with a clear error; ``wrap`` is the text wrapper the encounter benches draw with.

Not part of the shipped pipeline: this package lives beside ``shared/``, outside the Lambda
zip and the container image. Over 400 lines because most of it is the documents' words, page
by page; the drawing is the last third.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

import pillow_heif
import pymupdf
from PIL import Image, ImageDraw, ImageOps

PATIENT = "Margaret Ellison"
PATIENT_DOB = "14/07/1958"
PATIENT_MRN = "RMC-448120"
LOCKED_USER_PASSWORD = "patient-only"  # opens locked.pdf
LOCKED_OWNER_PASSWORD = "owner-only"

EXIF_ORIENTATION = 0x0112
A4 = (595, 842)  # points
DPI = 200
MARGIN = 56

# A page is a list of blocks: (style, text). Styles: "head" letterhead, "sub" letterhead
# detail, "title", "kv" one line, "para" wrapped paragraph, "small", "gap" (text ignored).
Block = tuple[str, str]
Page = list[Block]

_STYLES: dict[str, tuple[str, float]] = {
    "head": ("hebo", 16),
    "sub": ("helv", 10),
    "title": ("hebo", 14),
    "kv": ("helv", 11.5),
    "para": ("helv", 11.5),
    "small": ("helv", 10),
}


# --- content -------------------------------------------------------------------------


def _two_visits() -> list[Page]:
    return [
        [
            ("head", "Riverside Medical Centre"),
            ("sub", "12 Wharf Road, Riverside  |  Phone 5550 2100"),
            ("gap", ""),
            ("title", "CLINIC VISIT NOTE"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("kv", f"MRN: {PATIENT_MRN}"),
            ("kv", "Date of visit: 05/03/2024"),
            ("kv", "Clinician: Dr Priya Raman"),
            ("gap", ""),
            ("kv", "Reason for visit"),
            (
                "para",
                "Review of type 2 diabetes and blood pressure. Reports good adherence to "
                "metformin. No hypoglycaemic episodes. Occasional morning headaches.",
            ),
            ("gap", ""),
            ("kv", "Examination"),
            (
                "para",
                "BP 148/92 mmHg, pulse 76 regular, weight 82 kg, BMI 30.1. Feet: sensation "
                "intact, pulses present. No oedema.",
            ),
            ("gap", ""),
            ("small", "Page 1 of 2"),
        ],
        [
            ("sub", f"Riverside Medical Centre  -  {PATIENT}  -  continued"),
            ("gap", ""),
            ("kv", "Assessment"),
            (
                "para",
                "Type 2 diabetes, HbA1c 7.4% last month, acceptable. Hypertension not at target on current therapy.",
            ),
            ("gap", ""),
            ("kv", "Plan"),
            (
                "para",
                "Increase perindopril to 10 mg daily. Repeat renal function and "
                "electrolytes in two weeks. Follow-up with GP in two weeks.",
            ),
            ("gap", ""),
            ("kv", "Signed: Dr Priya Raman, General Physician"),
            ("gap", ""),
            ("small", "Page 2 of 2"),
        ],
        [
            ("head", "Northgate Family Clinic"),
            ("sub", "3 Station Street, Northgate  |  Phone 5550 7788"),
            ("gap", ""),
            ("title", "GP FOLLOW-UP CONSULTATION"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("kv", "Date of service: 19 March 2024"),
            ("kv", "Seen by: Dr Thomas Quigley"),
            ("gap", ""),
            (
                "para",
                "Follow-up of blood pressure after perindopril dose increase. Home readings "
                "average 134/84. Renal function and potassium normal on repeat bloods.",
            ),
            ("gap", ""),
            ("kv", "Plan"),
            (
                "para",
                "Continue perindopril 10 mg daily and metformin 1 g twice daily. Review in "
                "three months with fasting lipids.",
            ),
            ("gap", ""),
            ("small", "Page 1 of 1"),
        ],
    ]


def _discharge() -> list[Page]:
    return [
        [
            ("head", "Lakeside General Hospital"),
            ("sub", "200 Shore Parade, Lakeside  |  Phone 5550 9000"),
            ("gap", ""),
            ("title", "DISCHARGE SUMMARY"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("kv", "Admitted: 2024-02-11      Ward: 6 East (General Medicine)"),
            ("kv", "Discharged: 2024-02-16"),
            ("kv", "Attending: Dr Samuel Okafor"),
            ("gap", ""),
            ("kv", "Principal diagnosis"),
            ("para", "Community acquired pneumonia, right lower lobe."),
            ("gap", ""),
            ("kv", "Presentation"),
            (
                "para",
                "Three days of fever, productive cough and pleuritic chest pain. Oxygen "
                "saturation 91% on room air. Chest X-ray showed right lower lobe "
                "consolidation.",
            ),
            ("gap", ""),
            ("small", "Page 1 of 2"),
        ],
        [
            ("sub", f"Lakeside General Hospital  -  Discharge Summary  -  {PATIENT}"),
            ("gap", ""),
            ("kv", "Hospital course"),
            (
                "para",
                "Treated with intravenous ceftriaxone and oral azithromycin, switched to "
                "oral amoxicillin on day three. Oxygen weaned by day four. Blood cultures "
                "negative.",
            ),
            ("gap", ""),
            ("kv", "Discharge medications"),
            ("para", "Amoxicillin 1 g three times daily for 3 more days. Usual medications unchanged."),
            ("gap", ""),
            ("kv", "Follow-up"),
            ("para", "GP review in one week. Repeat chest X-ray in six weeks."),
            ("gap", ""),
            ("small", "Page 2 of 2"),
        ],
    ]


def _referral() -> list[Page]:
    return [
        [
            ("sub", "FAX  From: Elm Grove Medical Centre  To: Eastside Cardiology  Page 1 of 2"),
            ("gap", ""),
            ("head", "Elm Grove Medical Centre"),
            ("sub", "88 Elm Grove, Westbury  |  Phone 5550 3344"),
            ("gap", ""),
            ("title", "REFERRAL LETTER"),
            ("gap", ""),
            ("kv", "Date: 12 April 2024"),
            ("gap", ""),
            ("kv", "Dear Dr Helen Chen,"),
            ("gap", ""),
            ("kv", f"Re: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("gap", ""),
            (
                "para",
                "Thank you for seeing this 65 year old woman with exertional chest "
                "tightness over the past month, relieved by rest. She has type 2 diabetes "
                "and hypertension. ECG today shows sinus rhythm with no acute changes.",
            ),
        ],
        [
            ("sub", "FAX  From: Elm Grove Medical Centre  To: Eastside Cardiology  Page 2 of 2"),
            ("gap", ""),
            (
                "para",
                "I would be grateful for your assessment and consideration of a stress "
                "test. Current medications are metformin and perindopril.",
            ),
            ("gap", ""),
            ("kv", "Yours sincerely,"),
            ("gap", ""),
            ("kv", "Dr Thomas Quigley"),
            ("kv", "General Practitioner"),
        ],
    ]


def _lab() -> list[Page]:
    return [
        [
            ("head", "Harbour Pathology"),
            ("sub", "Accredited Laboratory  |  Phone 5550 6600"),
            ("gap", ""),
            ("title", "PATHOLOGY REPORT"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("kv", "Collected: 04.03.2024 08:15"),
            ("kv", "Reported: 05.03.2024 16:40"),
            ("kv", "Requested by: Dr Priya Raman"),
            ("gap", ""),
            ("kv", "Test                 Result      Reference"),
            ("kv", "HbA1c                7.4 %       4.0 - 6.0"),
            ("kv", "Sodium               139         135 - 145"),
            ("kv", "Potassium            4.6         3.5 - 5.2"),
            ("kv", "Creatinine           88          45 - 90"),
            ("gap", ""),
            ("para", "Comment: HbA1c above target range. Renal function normal."),
            ("gap", ""),
            ("kv", "Pathologist: Dr Anika Ferreira"),
        ],
    ]


def _ed_letter() -> list[Page]:
    return [
        [
            ("head", "Mercy Bay Hospital"),
            ("sub", "1 Bay Road, Mercy Bay  |  Phone 5550 4000"),
            ("gap", ""),
            ("title", "EMERGENCY DEPARTMENT DISCHARGE LETTER"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}      DOB: {PATIENT_DOB}"),
            ("kv", "Arrival: 22-Jan-2024 14:05"),
            ("kv", "Discharged: 22-Jan-2024 21:40"),
            ("kv", "Treating doctor: Dr Leo Marsh"),
            ("gap", ""),
            ("kv", "Diagnosis"),
            ("para", "Undisplaced fracture of the left distal radius after a fall at home."),
            ("gap", ""),
            ("kv", "Treatment"),
            ("para", "Closed reduction not required. Below elbow backslab applied. Paracetamol for pain."),
            ("gap", ""),
            ("kv", "Follow-up"),
            ("para", "Fracture clinic review on 29/01/2024. See your GP if pain worsens."),
        ],
    ]


def _clinic_note_png() -> list[Page]:
    return [
        [
            ("head", "Riverside Medical Centre"),
            ("gap", ""),
            ("title", "CLINIC VISIT NOTE"),
            ("gap", ""),
            ("kv", f"Patient: {PATIENT}"),
            ("kv", "Date of visit: 02/05/2024"),
            ("kv", "Clinician: Dr Priya Raman"),
            ("gap", ""),
            ("para", "Routine diabetes review. No changes to medication."),
        ],
    ]


# --- drawing -------------------------------------------------------------------------


def wrap(text: str, fontname: str, size: float, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` points in ``fontname`` at ``size``."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and pymupdf.get_text_length(candidate, fontname=fontname, fontsize=size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _draw(page: pymupdf.Page, blocks: Page) -> None:
    width = page.rect.width - 2 * MARGIN
    y = 64.0
    for style, text in blocks:
        if style == "gap":
            y += 8
            continue
        fontname, size = _STYLES[style]
        lines = wrap(text, fontname, size, width) if style == "para" else [text]
        for line in lines:
            page.insert_text((MARGIN, y), line, fontname=fontname, fontsize=size)
            y += size * 1.5


def _text_pdf(pages: Sequence[Page]) -> pymupdf.Document:
    doc = pymupdf.open()
    for blocks in pages:
        _draw(doc.new_page(width=A4[0], height=A4[1]), blocks)
    return doc


def _raster(pages: Sequence[Page], dpi: int = DPI) -> list[Image.Image]:
    """Render each page upright to a grayscale image."""
    images = []
    with _text_pdf(pages) as doc:
        for page in doc:
            pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
            images.append(Image.frombytes("L", (pix.width, pix.height), pix.samples))
    return images


def _scan(image: Image.Image, seed: int, angle: float = 0.4) -> Image.Image:
    """A scanner's look: a slight skew and some speckle."""
    rng = random.Random(seed)
    out = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    draw = ImageDraw.Draw(out)
    for _ in range(400):
        x, y = rng.randrange(out.width), rng.randrange(out.height)
        r = rng.choice((1, 1, 1, 2))
        draw.ellipse((x, y, x + r, y + r), fill=rng.randrange(60, 180))
    return out


def _photo(image: Image.Image) -> Image.Image:
    """A phone photo's look: off-white paper, soft ink, a little shading to one side."""
    tinted = ImageOps.colorize(image, black=(38, 36, 44), white=(242, 238, 228))
    shade = Image.linear_gradient("L").rotate(90).resize(tinted.size)
    dark = Image.new("RGB", tinted.size, (205, 200, 190))
    return Image.composite(tinted, dark, shade.point(lambda v: 200 + v * 55 // 255))


# --- writers -------------------------------------------------------------------------


def _write_two_visits(path: Path) -> None:
    with _text_pdf(_two_visits()) as doc:
        doc.save(path, garbage=3, deflate=True, no_new_id=True)


def _write_scanned_discharge(path: Path) -> None:
    with pymupdf.open() as doc:
        for index, image in enumerate(_raster(_discharge())):
            buf = io.BytesIO()
            _scan(image, seed=100 + index).save(buf, format="JPEG", quality=70, dpi=(DPI, DPI))
            page = doc.new_page(width=A4[0], height=A4[1])
            page.insert_image(page.rect, stream=buf.getvalue())
        doc.save(path, garbage=3, deflate=True, no_new_id=True)


def _write_fax_referral(path: Path) -> None:
    # A fax is bilevel: threshold the scan, then CCITT G4 as fax machines send it.
    pages = [
        _scan(image, seed=200 + i, angle=-0.3).point(lambda v: 255 if v > 150 else 0).convert("1")
        for i, image in enumerate(_raster(_referral()))
    ]
    pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:], compression="group4", dpi=(DPI, DPI))


def _write_lab_photo(path: Path) -> None:
    upright = _photo(_raster(_lab(), dpi=180)[0])
    # EXIF Orientation 6 says "rotate 90 degrees clockwise to display", so the stored pixels
    # are the upright page turned 90 degrees counter-clockwise, as a phone held sideways stores them.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    stored.save(path, format="JPEG", quality=72, exif=exif.tobytes(), dpi=(180, 180))


def _write_phone_letter(path: Path) -> None:
    image = _photo(_raster(_ed_letter(), dpi=180)[0])
    heif = pillow_heif.from_pillow(image)
    heif.save(path, quality=60)


def write_samples(dest: Path) -> dict[str, Path]:
    """Write the five good sample documents into ``dest``; return name -> path."""
    dest.mkdir(parents=True, exist_ok=True)
    writers = {
        "two_visits.pdf": _write_two_visits,
        "scanned_discharge.pdf": _write_scanned_discharge,
        "fax_referral.tiff": _write_fax_referral,
        "lab_photo.jpg": _write_lab_photo,
        "phone_letter.heic": _write_phone_letter,
    }
    paths = {}
    for name, write in writers.items():
        path = dest / name
        write(path)
        paths[name] = path
    return paths


def _truncated_pdf() -> bytes:
    with _text_pdf(_two_visits()) as doc:
        data = doc.tobytes(garbage=3)
    # A download cut short inside the catalog, before the page tree: MuPDF's repair finds
    # no pages to rescue (cut later, it rebuilds a usable document from the page objects).
    return data[: data.index(b"/Pages")]


def _locked_pdf() -> bytes:
    with _text_pdf(_two_visits()[:1]) as doc:
        return doc.tobytes(
            encryption=pymupdf.PDF_ENCRYPT_AES_256,
            user_pw=LOCKED_USER_PASSWORD,
            owner_pw=LOCKED_OWNER_PASSWORD,
        )


def write_bad_samples(dest: Path) -> dict[str, Path]:
    """Write documents docpipe must refuse into ``dest``; return name -> path.

    empty.pdf (0 bytes), truncated.pdf (cut before any page), locked.pdf (needs a user
    password), image_named.pdf (a PNG of a clinic note under a .pdf name), notes.txt.
    """
    dest.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    _raster(_clinic_note_png(), dpi=150)[0].save(png, format="PNG", optimize=True)
    contents = {
        "empty.pdf": b"",
        "truncated.pdf": _truncated_pdf(),
        "locked.pdf": _locked_pdf(),
        "image_named.pdf": png.getvalue(),
        "notes.txt": (
            f"Phone call with {PATIENT} on 06/03/2024.\nAsked about repeat prescription for metformin.\n"
        ).encode(),
    }
    paths = {}
    for name, data in contents.items():
        path = dest / name
        path.write_bytes(data)
        paths[name] = path
    return paths
